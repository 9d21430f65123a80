//! Storage benchmarks on a real sled database: commit throughput of final blocks, SPARQL point
//! lookups and joins at a given size, integrity validation and reopen time. Prints figures
//! (wall and process CPU time); asserts nothing.
//!
//! ```text
//! cargo bench -p provchain-storage --bench storage -- [options]
//!   --blocks N        blocks to commit (default 100)
//!   --txs N           transactions per block (default 100)
//!   --triples N       triples per transaction, about (default 10)
//!   --format F        turtle | ntriples (default turtle)
//!   --queries N       point lookups to time (default 2000)
//!   --skip LIST       phases to skip: lookup,join,graph,integrity,reopen,digest
//!   --dir PATH        keep the database here (default: a temporary directory)
//!   --json            one JSON object instead of text
//!   --pending         write each block to the pending store first, as the node does
//!   --parsed          parse every transaction before the commits (untimed), as the node
//!                     does when it admits one, and hand the parses to the commit
//!   --prepared        prepare each block's commit first (`Store::prepare_commit`), as the
//!                     node does while the block waits for finality; prints the split
//!   --cache-mb N      memory for storage caches, as storage.cache_size_mb (default 64)
//! ```
//!
//! The workload is supply-chain provenance: production batches, shipments and sensor
//! readings with PROV-O links (`prov:wasGeneratedBy`, `prov:used`, `prov:wasAttributedTo`,
//! `prov:wasDerivedFrom`), typed literals and links to earlier transactions' entities, so the
//! dictionary sees both new and repeated terms as in a real chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provchain_consensus::{Block, Genesis, Keypair, RdfFormat, Transaction, TxBody};
use provchain_storage::{ParsedTx, QueryLimits, Store};
use serde_json::json;

struct Args {
    blocks: u64,
    txs: u64,
    triples: u64,
    format: RdfFormat,
    queries: u64,
    skip: Vec<String>,
    dir: Option<std::path::PathBuf>,
    json: bool,
    /// Store each block as pending before committing it, as the node does.
    pending: bool,
    /// Parse the transactions ahead and commit with `commit_final_parsed`, as the node does.
    parsed: bool,
    /// Prepare each commit before it, as the node does while a block waits for finality.
    prepared: bool,
    /// Memory for storage caches (`storage.cache_size_mb`).
    cache_mb: u64,
}

fn args() -> Args {
    let mut a = Args {
        blocks: 100,
        txs: 100,
        triples: 10,
        format: RdfFormat::Turtle,
        queries: 2000,
        skip: Vec::new(),
        dir: None,
        json: false,
        pending: false,
        parsed: false,
        prepared: false,
        cache_mb: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match arg.as_str() {
            "--blocks" => a.blocks = val().parse().unwrap_or(a.blocks),
            "--txs" => a.txs = val().parse().unwrap_or(a.txs),
            "--triples" => a.triples = val().parse().unwrap_or(a.triples),
            "--queries" => a.queries = val().parse().unwrap_or(a.queries),
            "--format" => {
                a.format = match val().as_str() {
                    "ntriples" | "n-triples" => RdfFormat::NTriples,
                    _ => RdfFormat::Turtle,
                }
            }
            "--skip" => a.skip = val().split(',').map(str::to_owned).collect(),
            "--dir" => a.dir = Some(val().into()),
            "--json" => a.json = true,
            "--pending" => a.pending = true,
            "--parsed" => a.parsed = true,
            "--prepared" => a.prepared = true,
            "--cache-mb" => a.cache_mb = val().parse().unwrap_or(a.cache_mb),
            // `cargo bench` passes --bench; ignore it and anything unknown.
            _ => {}
        }
    }
    a
}

#[path = "support.rs"]
mod support;
use support::{Merger, cpu_seconds, percentile, rss_mib};

#[path = "workload.rs"]
mod workload;
use workload::document;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let authority = Keypair::from_secret([1; 32]);
    let node = Keypair::from_secret([2; 32]);
    let genesis = Genesis {
        network_id: "bench".into(),
        authorities: vec![authority.public()],
        block_interval_ms: 1000,
        governance: Default::default(),
    };
    let gh = genesis.hash();
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let store = Store::open_with_cache(&dir, &genesis, a.cache_mb * 1024 * 1024)?;
    let merger = Merger::start(&store);
    let mut report = serde_json::Map::new();
    let say = |text: String| {
        if !a.json {
            println!("{text}");
        }
    };

    // Sanity check of the generator: every document parses with the intended count.
    let probe = provchain_storage::rdf::parse(
        a.format,
        &document(1, 7, a.triples as usize, a.format),
        "x",
    )?;
    say(format!(
        "workload: {} tx/block x {} triples/tx ({}), {} blocks",
        a.txs,
        probe.len(),
        a.format.name(),
        a.blocks
    ));

    // The blocks first (signing is not storage work), then the commits, timed as a whole:
    // wall time from the first commit until the last merge due has finished, and the
    // process's CPU time over the same span (commits and merges).
    let mut parent = store.final_head()?;
    let base = parent.height * a.txs;
    let mut chain = Vec::with_capacity(a.blocks as usize);
    for b in 0..a.blocks {
        let txs: Vec<Transaction> = (0..a.txs)
            .map(|t| {
                let n = base + b * a.txs + t;
                Transaction::sign(
                    TxBody {
                        format: a.format,
                        data: document(1, n, a.triples as usize, a.format).into(),
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
    let mut parsed = HashMap::new();
    if a.parsed {
        for tx in chain.iter().flat_map(|b| &b.transactions) {
            let id = tx.id();
            parsed.insert(id, Arc::new(ParsedTx::parse(&id, tx)?));
        }
    }
    let mut times = Vec::with_capacity(a.blocks as usize);
    let mut prepare_times = Vec::new();
    let mut point_times = Vec::new();
    let rss_before = rss_mib();
    let (phase, cpu0) = (Instant::now(), cpu_seconds());
    for (k, block) in chain.iter().enumerate() {
        if std::env::var("BENCH_RSS").is_ok() && k % 100 == 0 {
            eprintln!("block {k}: rss {:.1} MiB", rss_mib());
        }
        let started = Instant::now();
        if a.pending {
            store.put_pending(block)?;
        }
        if a.prepared {
            store.prepare_commit(std::slice::from_ref(block), &parsed)?;
            prepare_times.push(started.elapsed());
        }
        let point = Instant::now();
        store.commit_final_parsed(std::slice::from_ref(block), &parsed)?;
        point_times.push(point.elapsed());
        times.push(started.elapsed());
    }
    drop(chain);
    drop(parsed);
    while store.merge_due() {
        store.merge_segments()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let commit_wall = phase.elapsed();
    let commit_cpu = cpu_seconds() - cpu0;
    let rss_after = rss_mib();
    let data_triples = store.data_triple_count();
    let quads = store.triple_count();
    times.sort();
    let secs = commit_wall.as_secs_f64();
    let committed = (a.blocks * a.txs) as f64 * probe.len() as f64;
    let stats = store.storage_stats();
    if a.prepared {
        prepare_times.sort();
        point_times.sort();
        say(format!(
            "prepared commits: preparation p50 {:.1} ms, p99 {:.1} ms; then the commit point \
             p50 {:.2} ms, p99 {:.2} ms",
            percentile(&prepare_times, 0.5) / 1000.0,
            percentile(&prepare_times, 0.99) / 1000.0,
            percentile(&point_times, 0.5) / 1000.0,
            percentile(&point_times, 0.99) / 1000.0,
        ));
    }
    say(format!(
        "commit: {:.0} data triples/s wall ({:.0} per CPU-second), {:.0} quads/s incl. metadata; \
         block p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        committed / secs,
        committed / commit_cpu.max(1e-9),
        committed * quads as f64 / data_triples.max(1) as f64 / secs,
        percentile(&times, 0.5) / 1000.0,
        percentile(&times, 0.99) / 1000.0,
        percentile(&times, 1.0) / 1000.0,
    ));
    store.flush()?;
    let disk = store.size_on_disk()? as f64 / (1024.0 * 1024.0);
    say(format!(
        "store: {data_triples} data triples, {quads} quads, {} terms, {} segments \
         ({} KiB of headers in memory), {disk:.1} MiB on disk; process RSS {rss_before:.0} MiB \
         before the commits (blocks generated), {rss_after:.0} MiB after",
        stats.terms,
        stats.segments,
        stats.header_bytes / 1024
    ));
    report.insert(
        "commit".into(),
        json!({
            "blocks": a.blocks, "txs_per_block": a.txs, "triples_per_tx": probe.len(),
            "parsed_ahead": a.parsed,
            "prepared": a.prepared,
            "commit_point_ms_p50": percentile(&point_times, 0.5) / 1000.0,
            "format": a.format.name(),
            "data_triples_per_s": committed / secs,
            "data_triples_per_cpu_s": committed / commit_cpu.max(1e-9),
            "block_ms_p50": percentile(&times, 0.5) / 1000.0,
            "block_ms_p99": percentile(&times, 0.99) / 1000.0,
            "block_ms_max": percentile(&times, 1.0) / 1000.0,
            "stored_data_triples": data_triples, "stored_quads": quads,
            "segments": stats.segments, "terms": stats.terms,
            "header_bytes": stats.header_bytes, "disk_mib": disk,
        }),
    );

    let limits = QueryLimits {
        timeout: Duration::from_secs(60),
        max_rows: 10_000_000,
    };
    let items = store.final_head()?.height * a.txs;
    let mut timed = |name: &str,
                     key: &str,
                     make: &dyn Fn(u64) -> String|
     -> Result<(), Box<dyn std::error::Error>> {
        let mut lat = Vec::with_capacity(a.queries as usize);
        let cpu0 = cpu_seconds();
        for i in 0..a.queries {
            // Spread over the whole dataset, old and new.
            let n = (i * 7919 + 13) % items.max(1);
            let q = make(n);
            let started = Instant::now();
            let out = store.sparql(&q, &limits)?;
            lat.push(started.elapsed());
            if !String::from_utf8_lossy(&out.body).contains("true")
                && !String::from_utf8_lossy(&out.body).contains("value")
            {
                return Err(format!("{name}: no answer for {q}").into());
            }
        }
        let cpu = cpu_seconds() - cpu0;
        lat.sort();
        say(format!(
            "sparql {name}: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({} queries, {:.0} µs CPU each)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
            a.queries,
            cpu * 1e6 / a.queries as f64
        ));
        report.insert(
            key.into(),
            json!({"p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99),
                   "max_us": percentile(&lat, 1.0), "queries": a.queries}),
        );
        Ok(())
    };
    let skip = |p: &str| a.skip.iter().any(|s| s == p);
    if !skip("lookup") {
        timed("point lookup (ASK, one triple)", "point_lookup", &|n| {
            let kind = ["batch", "shipment", "reading"][(n % 3) as usize];
            let act = ["production", "transport", "measurement"][(n % 3) as usize];
            format!(
                "ASK {{ <http://example.org/supply/r1/{kind}/{n}> <http://www.w3.org/ns/prov#wasGeneratedBy> <http://example.org/supply/r1/{act}/{n}> }}"
            )
        })?;
        timed(
            "subject lookup (SELECT ?p ?o, ~10 rows)",
            "subject_lookup",
            &|n| {
                let kind = ["batch", "shipment", "reading"][(n % 3) as usize];
                format!("SELECT ?p ?o WHERE {{ <http://example.org/supply/r1/{kind}/{n}> ?p ?o }}")
            },
        )?;
        timed(
            "provenance of a triple (GRAPH ?g + chain metadata)",
            "provenance_lookup",
            &|n| {
                let kind = ["batch", "shipment", "reading"][(n % 3) as usize];
                let act = ["production", "transport", "measurement"][(n % 3) as usize];
                format!(
                    "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX pc: <urn:provchain:vocab#>
                     SELECT ?g ?who ?block WHERE {{
                       GRAPH ?g {{ <http://example.org/supply/r1/{kind}/{n}> prov:wasGeneratedBy <http://example.org/supply/r1/{act}/{n}> }}
                       GRAPH <urn:provchain:chain> {{ ?g prov:wasAttributedTo ?who ; pc:inBlock ?block }}
                     }}"
                )
            },
        )?;
    }
    if !skip("join") {
        let q = "PREFIX prov: <http://www.w3.org/ns/prov#>
                 SELECT (COUNT(*) AS ?n) WHERE { ?e prov:wasGeneratedBy ?a . ?a prov:wasAssociatedWith <http://example.org/supply/agent/7> }";
        let (started, cpu0) = (Instant::now(), cpu_seconds());
        let out = store.sparql(q, &limits)?;
        let (ms, cpu) = (started.elapsed().as_secs_f64() * 1e3, cpu_seconds() - cpu0);
        let body = String::from_utf8_lossy(&out.body).to_string();
        let n = body
            .split("\"value\":\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("?")
            .to_owned();
        say(format!(
            "sparql two-pattern join (every entity generated by an activity of one agent, over all {} entities): {ms:.0} ms ({cpu:.2} s CPU) -> {n} rows",
            items
        ));
        report.insert(
            "join".into(),
            json!({"ms": ms, "rows": n, "entities": items}),
        );
    }
    if !skip("integrity") {
        let started = Instant::now();
        let r = store.validate_integrity(&mut |_, _| {})?;
        let s = started.elapsed().as_secs_f64();
        say(format!(
            "validate_integrity: ok={} over {} blocks / {} tx in {s:.2} s",
            r.ok, r.checked_blocks, r.checked_transactions
        ));
        report.insert("integrity".into(), json!({"ok": r.ok, "s": s}));
    }
    merger.stop();
    if !skip("reopen") {
        drop(store);
        let started = Instant::now();
        let store = Store::open(&dir, &genesis)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        say(format!(
            "reopen: {ms:.1} ms (head {}, {} segments)",
            store.final_head()?.height,
            store.storage_stats().segments
        ));
        report.insert("reopen_ms".into(), json!(ms));
    }
    if !skip("digest") {
        report.insert("digest_ms".into(), digest_costs(&say));
    }
    if a.json {
        println!("{}", serde_json::Value::Object(report));
    }
    Ok(())
}

/// Canonical digest cost per document shape: typical, large, the largest look-alike structure
/// within the bounds, and shapes the bounds refuse (which would take seconds or overflow the
/// stack without them).
fn digest_costs(say: &dyn Fn(String)) -> serde_json::Value {
    use provchain_storage::{digest, rdf};
    let nt = |lines: Vec<String>| lines.concat();
    let shapes: Vec<(&str, String)> = vec![
        (
            "10 triples",
            nt((0..10)
                .map(|i| format!("<http://e/s{i}> <http://e/p> \"v{i}\" .\n"))
                .collect()),
        ),
        (
            "50,000 triples",
            nt((0..50_000)
                .map(|i| format!("<http://e/s{i}> <http://e/p> \"v{i}\" .\n"))
                .collect()),
        ),
        (
            "300 look-alike blank-node items",
            nt((0..300)
                .map(|c| {
                    format!(
                        "<http://e/ship> <http://e/item> _:b{c} .\n_:b{c} <http://e/n> \"1\" .\n"
                    )
                })
                .collect()),
        ),
        (
            "120-node look-alike chain",
            nt((0..120)
                .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", i + 1))
                .collect()),
        ),
        (
            "4,096-node look-alike ring (refused)",
            nt((0..4096)
                .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", (i + 1) % 4096))
                .collect()),
        ),
        (
            "7-clique of blank nodes (refused)",
            nt((0..7)
                .flat_map(|i| {
                    (0..7)
                        .filter(move |j| *j != i)
                        .map(move |j| format!("_:n{i} <http://e/k> _:n{j} .\n"))
                })
                .collect()),
        ),
    ];
    let mut out = serde_json::Map::new();
    for (name, doc) in shapes {
        let quads = rdf::parse(RdfFormat::NTriples, &doc, "bench").expect("bench document parses");
        let runs = if quads.len() > 1000 { 3 } else { 50 };
        let started = Instant::now();
        let mut outcome = String::new();
        for _ in 0..runs {
            outcome = match digest::canonical_digest(&quads) {
                Ok(_) => "digest".into(),
                Err(e) => format!("no digest ({e})"),
            };
        }
        let ms = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
        say(format!("canonical digest, {name}: {ms:.3} ms -> {outcome}"));
        out.insert(name.into(), json!(ms));
    }
    serde_json::Value::Object(out)
}
