//! Commit throughput and SPARQL latency on a real sled database.
//!
//! `cargo run --release -p provchain-storage --example commit_bench [blocks]`
//! Commits `blocks` (default 100) blocks of 100 transactions × 10 triples, then measures
//! point lookups and a join at that size. Prints figures; asserts nothing.

use std::time::{Duration, Instant};

use provchain_consensus::{Block, Genesis, Keypair, RdfFormat, Transaction, TxBody};
use provchain_storage::{QueryLimits, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blocks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let authority = Keypair::from_secret([1; 32]);
    let node = Keypair::from_secret([2; 32]);
    let genesis = Genesis {
        network_id: "bench".into(),
        authorities: vec![authority.public()],
        block_interval_ms: 1000,
    };
    let gh = genesis.hash();
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), &genesis)?;

    let mut parent = genesis.block();
    let mut commit_time = Duration::ZERO;
    let mut data_triples = 0u64;
    let mut worst = Duration::ZERO;
    for b in 0..blocks {
        let txs: Vec<Transaction> = (0..100u64)
            .map(|t| {
                let n = b * 100 + t;
                let mut doc = String::with_capacity(800);
                for k in 0..10u64 {
                    doc.push_str(&format!(
                        "<http://example.org/item/{n}> <http://example.org/p{k}> \"value {n} {k}\" .\n"
                    ));
                }
                Transaction::sign(
                    TxBody {
                        format: RdfFormat::NTriples,
                        data: doc,
                        submitter: node.public(),
                        client: None,
                        timestamp_ms: 1_700_000_000_000 + n,
                    },
                    &node,
                    &gh,
                )
            })
            .collect();
        let block = Block::seal(
            &parent.header,
            b + 1,
            1_700_000_000_000 + b,
            txs,
            &authority,
            &gh,
        );
        let started = Instant::now();
        store.commit_final(std::slice::from_ref(&block))?;
        let took = started.elapsed();
        commit_time += took;
        worst = worst.max(took);
        data_triples += 1000;
        parent = block;
    }
    let secs = commit_time.as_secs_f64();
    println!(
        "commit: {blocks} blocks x 100 tx x 10 triples = {data_triples} data triples \
         ({} quads incl. metadata) in {secs:.2} s",
        store.triple_count()
    );
    println!(
        "commit: {:.0} data triples/s, {:.0} quads/s, {:.1} ms/block mean, {:.1} ms worst (each flushed)",
        data_triples as f64 / secs,
        store.triple_count() as f64 / secs,
        secs * 1000.0 / blocks as f64,
        worst.as_secs_f64() * 1000.0
    );
    store.flush()?;
    println!(
        "disk: {:.1} MiB",
        store.size_on_disk()? as f64 / (1024.0 * 1024.0)
    );

    let limits = QueryLimits {
        timeout: Duration::from_secs(30),
        max_rows: 1_000_000,
    };
    let n_items = blocks * 100;
    let rounds = 1000u64;
    let measure =
        |name: &str, make: &dyn Fn(u64) -> String| -> Result<(), Box<dyn std::error::Error>> {
            let started = Instant::now();
            for i in 0..rounds {
                let q = make((i * 7919) % n_items);
                let out = store.sparql(&q, &limits)?;
                assert!(!out.body.is_empty());
            }
            let per = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            println!("sparql {name}: {per:.0} µs/query ({rounds} queries)");
            Ok(())
        };
    measure("ASK point lookup", &|i| {
        format!("ASK {{ <http://example.org/item/{i}> <http://example.org/p3> \"value {i} 3\" }}")
    })?;
    measure("SELECT by subject (10 rows)", &|i| {
        format!("SELECT ?p ?o WHERE {{ <http://example.org/item/{i}> ?p ?o }}")
    })?;
    measure("who submitted a triple (GRAPH + chain metadata)", &|i| {
        format!(
            "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX pc: <urn:provchain:vocab#>
             SELECT ?who ?block WHERE {{ GRAPH ?g {{ <http://example.org/item/{i}> <http://example.org/p1> ?o }}
               GRAPH <urn:provchain:chain> {{ ?g prov:wasAttributedTo ?who ; pc:inBlock ?block }} }}"
        )
    })?;
    let started = Instant::now();
    let out = store.sparql(
        "SELECT (COUNT(*) AS ?n) WHERE { ?s <http://example.org/p1> ?a . ?s <http://example.org/p2> ?b }",
        &limits,
    )?;
    println!(
        "sparql two-pattern join over all items: {:.0} ms -> {}",
        started.elapsed().as_secs_f64() * 1000.0,
        String::from_utf8_lossy(&out.body)
    );
    let started = Instant::now();
    let report = store.validate_integrity(&mut |_, _| {})?;
    println!(
        "validate_integrity: ok={} over {} blocks / {} tx in {:.2} s",
        report.ok,
        report.checked_blocks,
        report.checked_transactions,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    drop(store);
    let store = Store::open(dir.path(), &genesis)?;
    println!(
        "reopen: {:.1} ms (head {})",
        started.elapsed().as_secs_f64() * 1000.0,
        store.final_head()?.height
    );
    Ok(())
}
