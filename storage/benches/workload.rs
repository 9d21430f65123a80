//! The load generator's workload (`provchain bench`, cli/src/bench.rs), shared by the storage
//! benchmark and the chain builder example (`#[path]`-included; a copy because benches cannot
//! depend on the CLI, which depends on this crate).

use provchain_consensus::RdfFormat;

const EX: &str = "http://example.org/supply/";

/// One transaction's document: exactly `triples` statements (at least 8) of supply-chain
/// provenance, event `n` of run `run`. Turtle is written the way clients write it (prefixes,
/// `;` lists, `a`); N-Triples in full.
pub fn document(run: u64, n: u64, triples: usize, format: RdfFormat) -> String {
    let base = format!("{EX}r{run}/");
    let kind = n % 3;
    // An earlier production batch of this run: the input this event used or derives from.
    let prev = n.saturating_sub(1 + n % 17);
    let prev = prev - prev % 3;
    let iri = |s: String| format!("<{base}{s}>");
    let shared = |s: String| format!("<{EX}{s}>");
    let prov = |s: &str| format!("<http://www.w3.org/ns/prov#{s}>");
    let lit = |v: String, dt: &str| format!("\"{v}\"^^<http://www.w3.org/2001/XMLSchema#{dt}>");
    let a = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>".to_owned();
    let (subject, activity, class) = match kind {
        0 => (
            iri(format!("batch/{n}")),
            iri(format!("production/{n}")),
            "ProductBatch",
        ),
        1 => (
            iri(format!("shipment/{n}")),
            iri(format!("transport/{n}")),
            "Shipment",
        ),
        _ => (
            iri(format!("reading/{n}")),
            iri(format!("measurement/{n}")),
            "SensorReading",
        ),
    };
    let time = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + n % 12,
        1 + n % 28,
        n % 24,
        n % 60,
        (n / 60) % 60
    );
    let mut st: Vec<(String, String, String)> = vec![
        (subject.clone(), a.clone(), shared(class.into())),
        (subject.clone(), a.clone(), prov("Entity")),
        (subject.clone(), prov("wasGeneratedBy"), activity.clone()),
        (activity.clone(), a.clone(), prov("Activity")),
        (
            activity.clone(),
            prov("wasAssociatedWith"),
            shared(format!("agent/{}", n % 40)),
        ),
        (activity.clone(), prov("endedAtTime"), lit(time, "dateTime")),
        (activity.clone(), prov("used"), iri(format!("batch/{prev}"))),
        (
            subject.clone(),
            prov("wasDerivedFrom"),
            iri(format!("batch/{prev}")),
        ),
    ];
    let mut extra = 0u64;
    while st.len() < triples {
        let (p, o) = match (kind, extra % 4) {
            (0, 0) => ("quantityKg", lit(format!("{}.5", 100 + n % 900), "decimal")),
            (0, 1) => ("lotNumber", format!("\"LOT-{run}-{n:08}\"")),
            (1, 0) => ("destination", shared(format!("site/{}", n % 25))),
            (1, 1) => ("containerId", format!("\"CONT-{:06}\"", n * 7 % 999_983)),
            (_, 0) => (
                "temperatureC",
                lit(format!("{}.{}", n % 12, n % 10), "decimal"),
            ),
            (_, 1) => ("humidityPct", lit(format!("{}", 30 + n % 50), "integer")),
            (_, 2) => ("sensor", shared(format!("sensor/{}", n % 200))),
            _ => ("note", format!("\"event {n} detail {extra}\"@en")),
        };
        st.push((subject.clone(), shared(p.into()), o));
        extra += 1;
    }
    st.truncate(triples.max(1));
    let mut doc = String::with_capacity(st.len() * 120);
    if format != RdfFormat::Turtle {
        for (s, p, o) in &st {
            doc.push_str(s);
            doc.push(' ');
            doc.push_str(p);
            doc.push(' ');
            doc.push_str(o);
            doc.push_str(" .\n");
        }
        return doc;
    }
    doc.push_str("@prefix ex: <http://example.org/supply/> .\n");
    doc.push_str("@prefix prov: <http://www.w3.org/ns/prov#> .\n");
    doc.push_str("@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n");
    let short = |t: &str| -> String {
        for (ns, pfx) in [(EX, "ex:"), ("http://www.w3.org/ns/prov#", "prov:")] {
            if let Some(local) = t
                .strip_prefix('<')
                .and_then(|x| x.strip_prefix(ns))
                .and_then(|x| x.strip_suffix('>'))
                .filter(|x| x.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return format!("{pfx}{local}");
            }
        }
        if t == a {
            return "a".into();
        }
        match t.split_once("^^<http://www.w3.org/2001/XMLSchema#") {
            Some((lex, dt)) if t.starts_with('"') => {
                format!("{lex}^^xsd:{}", dt.trim_end_matches('>'))
            }
            _ => t.to_owned(),
        }
    };
    let mut last = "";
    for (s, p, o) in &st {
        if s == last {
            doc.push_str(" ;\n    ");
        } else {
            if !last.is_empty() {
                doc.push_str(" .\n");
            }
            doc.push_str(s);
            doc.push(' ');
            last = s;
        }
        doc.push_str(&short(p));
        doc.push(' ');
        doc.push_str(&short(o));
    }
    doc.push_str(" .\n");
    doc
}
