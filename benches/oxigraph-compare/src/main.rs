//! Oxigraph on ProvChain's storage benchmark: the same supply-chain documents, signed into
//! the same blocks (same keys, timestamps and transaction ids) as
//! `cargo bench -p provchain-storage --bench storage`, ingested block by block — each
//! transaction's statements in its own named graph `urn:provchain:tx:<id>` plus the same
//! number of chain-metadata statements in `urn:provchain:chain` — then the same SPARQL
//! queries. Prints figures.
//!
//! ```text
//! cargo run --release [--features rocksdb] -- [--blocks 100] [--txs 100] [--triples 10] [--queries 2000]
//! ```
//!
//! Oxigraph runs in memory (default) or on RocksDB (`--features rocksdb`; its commits go to
//! RocksDB's write-ahead log without an fsync each, where ProvChain flushes every block).
//!
//! Not the same process as ProvChain's benchmark: oxigraph 0.5 turns on spargebra features
//! (`sep-0002`, `sep-0006`) that sophia_sparql 0.10 does not handle, so one binary cannot
//! link both.

use std::time::{Duration, Instant};

use oxigraph::io::{RdfFormat as OxFormat, RdfParser};
use oxigraph::model::{GraphNameRef, Literal, NamedNode, Quad};
use oxigraph::sparql::{QueryResults, SparqlEvaluator};
use provchain_consensus::{Block, Genesis, Keypair, RdfFormat, Transaction, TxBody};

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

fn arg(name: &str, default: u64) -> u64 {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// A query whose default graph is the union of all graphs, as in ProvChain.
fn union_query(
    q: &str,
) -> Result<oxigraph::sparql::PreparedSparqlQuery, Box<dyn std::error::Error>> {
    let mut prepared = SparqlEvaluator::new().parse_query(q)?;
    prepared.dataset_mut().set_default_graph_as_union();
    Ok(prepared)
}

fn iri(s: String) -> NamedNode {
    NamedNode::new_unchecked(s)
}

fn int(n: u64) -> Literal {
    Literal::new_typed_literal(
        n.to_string(),
        NamedNode::new_unchecked("http://www.w3.org/2001/XMLSchema#integer"),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blocks = arg("--blocks", 100);
    let txs_per_block = arg("--txs", 100);
    let triples = arg("--triples", 10) as usize;
    let queries = arg("--queries", 2000);
    let authority = Keypair::from_secret([1; 32]);
    let node = Keypair::from_secret([2; 32]);
    let genesis = Genesis {
        network_id: "bench".into(),
        authorities: vec![authority.public()],
        block_interval_ms: 1000,
        governance: Default::default(),
    };
    let gh = genesis.hash();
    eprintln!("generating {blocks} blocks of {txs_per_block} transactions x {triples} triples...");
    let mut chain: Vec<Block> = Vec::new();
    let mut parent = genesis.block().header;
    for b in 0..blocks {
        let txs: Vec<Transaction> = (0..txs_per_block)
            .map(|t| {
                let n = b * txs_per_block + t;
                Transaction::sign(
                    TxBody {
                        format: RdfFormat::Turtle,
                        data: document(1, n, triples, RdfFormat::Turtle),
                        submitter: node.public(),
                        client: None,
                        timestamp_ms: 1_700_000_000_000 + n,
                    },
                    &node,
                    &gh,
                )
            })
            .collect();
        let slot = parent.slot + 1;
        let block = Block::seal(
            &parent,
            slot,
            1_700_000_000_000 + slot * 1000,
            txs,
            &authority,
            &gh,
        );
        parent = block.header.clone();
        chain.push(block);
    }
    let data_triples = (blocks * txs_per_block) as f64 * triples as f64;

    // Oxigraph: the same documents, each in its transaction's graph, and the same number of
    // chain-metadata statements, one transaction per block.
    let oxdir = tempfile::tempdir()?;
    #[cfg(feature = "rocksdb")]
    let (ox, ox_kind) = (
        oxigraph::store::Store::open(oxdir.path())?,
        "Oxigraph 0.5 (RocksDB)",
    );
    #[cfg(not(feature = "rocksdb"))]
    let (ox, ox_kind) = (oxigraph::store::Store::new()?, "Oxigraph 0.5 (in memory)");
    let _ = &oxdir;
    let chain_graph = iri("urn:provchain:chain".into());
    let prov = |s: &str| iri(format!("http://www.w3.org/ns/prov#{s}"));
    let pcv = |s: &str| iri(format!("urn:provchain:vocab#{s}"));
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for b in &chain {
        let mut t = ox.start_transaction()?;
        let bnode = iri(format!("urn:provchain:block:{}", b.hash().to_hex()));
        let g = GraphNameRef::NamedNode(chain_graph.as_ref());
        for (p, o) in [
            (pcv("height"), int(b.header.height).into()),
            (pcv("slot"), int(b.header.slot).into()),
            (
                pcv("parent"),
                iri(format!(
                    "urn:provchain:block:{}",
                    b.header.parent_hash.to_hex()
                ))
                .into(),
            ),
            (
                pcv("proposer"),
                iri(format!("urn:provchain:node:{}", b.header.proposer.to_hex())).into(),
            ),
            (prov("generatedAtTime"), int(b.header.timestamp_ms).into()),
            (
                iri("http://www.w3.org/1999/02/22-rdf-syntax-ns#type".into()),
                pcv("Block").into(),
            ),
        ] {
            let o: oxigraph::model::Term = o;
            t.insert(&Quad::new(bnode.clone(), p, o, g.into_owned()));
        }
        for (index, tx) in b.transactions.iter().enumerate() {
            let txg = iri(format!("urn:provchain:tx:{}", tx.id().to_hex()));
            t.load_from_reader(
                RdfParser::from_format(OxFormat::Turtle).with_default_graph(txg.clone()),
                tx.body.data.as_bytes(),
            )?;
            for (p, o) in [
                (
                    iri("http://www.w3.org/1999/02/22-rdf-syntax-ns#type".into()),
                    prov("Entity").into(),
                ),
                (
                    prov("wasAttributedTo"),
                    iri(format!("urn:provchain:node:{}", tx.body.submitter.to_hex())).into(),
                ),
                (prov("generatedAtTime"), int(tx.body.timestamp_ms).into()),
                (pcv("inBlock"), bnode.clone().into()),
                (pcv("index"), int(index as u64).into()),
                (pcv("tripleCount"), int(triples as u64).into()),
                (pcv("format"), Literal::new_simple_literal("turtle").into()),
            ] {
                let o: oxigraph::model::Term = o;
                t.insert(&Quad::new(txg.clone(), p, o, g.into_owned()));
            }
        }
        t.commit()?;
    }
    let (ox_wall, ox_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let ox_quads = ox.len()?;

    println!(
        "ingest of {blocks} blocks x {txs_per_block} tx x {triples} triples ({data_triples:.0} data triples):"
    );
    println!(
        "  {ox_kind:<44} {:>9.0} data triples/s  ({:>7.0} per CPU-s)  {ox_quads} quads stored",
        data_triples / ox_wall,
        data_triples / ox_cpu.max(1e-9)
    );

    let items = blocks * txs_per_block;
    let base = "http://example.org/supply/r1/";
    type Case = (&'static str, Box<dyn Fn(u64) -> String>);
    let cases: Vec<Case> = vec![
        (
            "point lookup (ASK one triple)",
            Box::new(move |n| {
                let (kind, act) = [
                    ("batch", "production"),
                    ("shipment", "transport"),
                    ("reading", "measurement"),
                ][(n % 3) as usize];
                format!(
                    "ASK {{ <{base}{kind}/{n}> <http://www.w3.org/ns/prov#wasGeneratedBy> <{base}{act}/{n}> }}"
                )
            }),
        ),
        (
            "subject lookup (~10 rows)",
            Box::new(move |n| {
                let kind = ["batch", "shipment", "reading"][(n % 3) as usize];
                format!("SELECT ?p ?o WHERE {{ <{base}{kind}/{n}> ?p ?o }}")
            }),
        ),
        (
            "provenance (GRAPH ?g + metadata)",
            Box::new(move |n| {
                let (kind, act) = [
                    ("batch", "production"),
                    ("shipment", "transport"),
                    ("reading", "measurement"),
                ][(n % 3) as usize];
                format!(
                    "SELECT ?g ?who WHERE {{ GRAPH ?g {{ <{base}{kind}/{n}> <http://www.w3.org/ns/prov#wasGeneratedBy> <{base}{act}/{n}> }} \
                     GRAPH <urn:provchain:chain> {{ ?g <http://www.w3.org/ns/prov#wasAttributedTo> ?who }} }}"
                )
            }),
        ),
    ];
    println!("queries at this size ({queries} each, p50 / p99):");
    for (name, make) in &cases {
        let mut b = Vec::new();
        for i in 0..queries {
            let n = (i * 7919 + 13) % items;
            let q = make(n);
            let t = Instant::now();
            let rows = match union_query(&q)?.on_store(&ox).execute()? {
                QueryResults::Boolean(v) => usize::from(v),
                QueryResults::Solutions(s) => s.count(),
                QueryResults::Graph(g) => g.count(),
            };
            b.push(t.elapsed());
            assert!(rows > 0, "{q}");
        }
        b.sort();
        println!(
            "  {name:<34} {ox_kind} p50 {:>7.0} µs, p99 {:>7.0} µs",
            pct(&b, 0.5),
            pct(&b, 0.99)
        );
    }
    let join = "SELECT (COUNT(*) AS ?n) WHERE { ?e <http://www.w3.org/ns/prov#wasGeneratedBy> ?a . ?a <http://www.w3.org/ns/prov#wasAssociatedWith> <http://example.org/supply/agent/7> }";
    let t = Instant::now();
    if let QueryResults::Solutions(s) = union_query(join)?.on_store(&ox).execute()? {
        for r in s {
            r?;
        }
    }
    let b = t.elapsed();
    println!(
        "  {:<34} {ox_kind} {:>7.1} ms",
        "two-pattern join (COUNT)",
        b.as_secs_f64() * 1e3
    );
    Ok(())
}
