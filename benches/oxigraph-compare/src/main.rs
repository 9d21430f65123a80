//! ProvChain's storage and Oxigraph side by side, in one process, on the same data: the
//! supply-chain documents of `cargo bench -p provchain-storage --bench storage` (its workload
//! and support modules, included below), signed into the same blocks (same keys, timestamps and
//! transaction ids). Each block is committed to a ProvChain store (sled, flushed per block,
//! documents parsed at commit) and ingested into Oxigraph — each transaction's statements in
//! its own named graph `urn:provchain:tx:<id>` plus the same number of chain-metadata
//! statements in `urn:provchain:chain` — and the same SPARQL queries then run against both,
//! one after the other for each query, with the default graph as the union of all graphs.
//! Both must give the same number of answers for every query; the program stops with an
//! error otherwise. Prints figures; asserts no timing.
//!
//! ```text
//! cargo run --release [--features rocksdb] -- [--blocks 100] [--txs 100] [--triples 10] [--queries 2000]
//! ```
//!
//! Oxigraph runs in memory (default) or on RocksDB (`--features rocksdb`; its commits go to
//! RocksDB's write-ahead log without an fsync each, where ProvChain flushes every block).
//!
//! Oxigraph is taken at 0.4: oxigraph 0.5 shares spargebra 0.4 with sophia_sparql 0.10 and
//! turns on spargebra features (`sep-0002`, `sep-0006`) that sophia_sparql does not handle,
//! so the two cannot link into one binary; oxigraph 0.4 brings its own spargebra 0.3.

use std::time::{Duration, Instant};

use oxigraph::io::{RdfFormat as OxFormat, RdfParser};
use oxigraph::model::{GraphName, Literal, NamedNode, Quad, Term};
use oxigraph::sparql::{Query, QueryResults};
use oxigraph::store::LoaderError;
use provchain_consensus::{Block, Genesis, Keypair, RdfFormat, Transaction, TxBody};
use provchain_storage::{QueryLimits, Store};

#[path = "../../../storage/benches/workload.rs"]
mod workload;
use workload::document;

#[path = "../../../storage/benches/support.rs"]
mod support;
use support::{Merger, cpu_seconds, percentile, rss_mib};

type Error = Box<dyn std::error::Error>;

fn arg(name: &str, default: u64) -> u64 {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// The blocks of the run: `blocks` blocks of `txs` transactions of `triples` statements.
fn chain(genesis: &Genesis, blocks: u64, txs: u64, triples: usize) -> Vec<Block> {
    let authority = Keypair::from_secret([1; 32]);
    let node = Keypair::from_secret([2; 32]);
    let gh = genesis.hash();
    let mut parent = genesis.block().header;
    let mut chain = Vec::with_capacity(blocks as usize);
    for b in 0..blocks {
        let body: Vec<Transaction> = (0..txs)
            .map(|t| {
                let n = b * txs + t;
                Transaction::sign(
                    TxBody {
                        format: RdfFormat::Turtle,
                        data: document(1, n, triples, RdfFormat::Turtle).into(),
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
            body,
            &authority,
            &gh,
        );
        parent = block.header.clone();
        chain.push(block);
    }
    chain
}

/// One block into Oxigraph, in one transaction: the block's metadata and, per transaction,
/// its document in the transaction's graph and its metadata, as ProvChain stores them.
fn ox_ingest(ox: &oxigraph::store::Store, b: &Block, triples: u64) -> Result<(), LoaderError> {
    let chain_graph = GraphName::NamedNode(iri("urn:provchain:chain".into()));
    let prov = |s: &str| iri(format!("http://www.w3.org/ns/prov#{s}"));
    let pcv = |s: &str| iri(format!("urn:provchain:vocab#{s}"));
    let rdf_type = || iri("http://www.w3.org/1999/02/22-rdf-syntax-ns#type".into());
    let block_iri = iri(format!("urn:provchain:block:{}", b.hash().to_hex()));
    let block_meta: Vec<(NamedNode, Term)> = vec![
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
        (rdf_type(), pcv("Block").into()),
    ];
    ox.transaction(|mut t| {
        for (p, o) in &block_meta {
            t.insert(&Quad::new(
                block_iri.clone(),
                p.clone(),
                o.clone(),
                chain_graph.clone(),
            ))?;
        }
        for (index, tx) in b.transactions.iter().enumerate() {
            let txg = iri(format!("urn:provchain:tx:{}", tx.id().to_hex()));
            t.load_from_reader(
                RdfParser::from_format(OxFormat::Turtle).with_default_graph(txg.clone()),
                tx.body.data.as_bytes(),
            )?;
            let meta: [(NamedNode, Term); 7] = [
                (rdf_type(), prov("Entity").into()),
                (
                    prov("wasAttributedTo"),
                    iri(format!("urn:provchain:node:{}", tx.body.submitter.to_hex())).into(),
                ),
                (prov("generatedAtTime"), int(tx.body.timestamp_ms).into()),
                (pcv("inBlock"), block_iri.clone().into()),
                (pcv("index"), int(index as u64).into()),
                (pcv("tripleCount"), int(triples).into()),
                (pcv("format"), Literal::new_simple_literal("turtle").into()),
            ];
            for (p, o) in meta {
                t.insert(&Quad::new(txg.clone(), p, o, chain_graph.clone()))?;
            }
        }
        Ok(())
    })
}

/// Answers of a ProvChain SPARQL result (rows, or 1 / 0 for ASK).
fn provchain_answers(store: &Store, q: &str, limits: &QueryLimits) -> Result<usize, Error> {
    let out = store.sparql(q, limits)?;
    let v: serde_json::Value = serde_json::from_slice(&out.body)?;
    if let Some(b) = v.get("boolean").and_then(|b| b.as_bool()) {
        return Ok(usize::from(b));
    }
    v.pointer("/results/bindings")
        .and_then(|b| b.as_array())
        .map(|b| b.len())
        .ok_or_else(|| format!("not a SPARQL JSON result: {q}").into())
}

/// Answers of an Oxigraph query run with the union of all graphs as its default graph.
fn oxigraph_answers(ox: &oxigraph::store::Store, q: &str) -> Result<usize, Error> {
    let mut query = Query::parse(q, None)?;
    query.dataset_mut().set_default_graph_as_union();
    Ok(match ox.query(query)? {
        QueryResults::Boolean(v) => usize::from(v),
        QueryResults::Solutions(s) => s.collect::<Result<Vec<_>, _>>()?.len(),
        QueryResults::Graph(g) => g.collect::<Result<Vec<_>, _>>()?.len(),
    })
}

/// The value of the first binding of a one-row `COUNT` result, from either store.
fn count_value_provchain(store: &Store, q: &str, limits: &QueryLimits) -> Result<String, Error> {
    let out = store.sparql(q, limits)?;
    let v: serde_json::Value = serde_json::from_slice(&out.body)?;
    v.pointer("/results/bindings/0/n/value")
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no count in the answer to {q}").into())
}

fn count_value_oxigraph(ox: &oxigraph::store::Store, q: &str) -> Result<String, Error> {
    let mut query = Query::parse(q, None)?;
    query.dataset_mut().set_default_graph_as_union();
    if let QueryResults::Solutions(mut s) = ox.query(query)?
        && let Some(Term::Literal(n)) = s.next().transpose()?.and_then(|r| r.get("n").cloned())
    {
        return Ok(n.value().to_owned());
    }
    Err(format!("no count in the answer to {q}").into())
}

fn main() -> Result<(), Error> {
    let blocks = arg("--blocks", 100);
    let txs = arg("--txs", 100);
    let triples = arg("--triples", 10);
    let queries = arg("--queries", 2000);
    let genesis = Genesis {
        network_id: "bench".into(),
        authorities: vec![Keypair::from_secret([1; 32]).public()],
        block_interval_ms: 1000,
        governance: Default::default(),
    };
    eprintln!("signing {blocks} blocks of {txs} transactions x {triples} triples...");
    let chain = chain(&genesis, blocks, txs, triples as usize);
    let data_triples = (blocks * txs * triples) as f64;
    println!(
        "ingest of {blocks} blocks x {txs} tx x {triples} triples ({data_triples:.0} data triples), one block at a time:"
    );

    // ProvChain: the node's store, segment merges on their own thread as the node runs them;
    // timed until the last merge due has finished.
    let dir = tempfile::tempdir()?;
    let store = Store::open_with_cache(&dir.path().join("provchain"), &genesis, 64 << 20)?;
    let merger = Merger::start(&store);
    let rss0 = rss_mib();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for b in &chain {
        store.commit_final(std::slice::from_ref(b))?;
    }
    while store.merge_due() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (pc_wall, pc_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    merger.stop();
    let rss1 = rss_mib();
    println!(
        "  {:<32} {:>9.0} data triples/s  ({:>7.0} per CPU-s)  {} quads stored, RSS +{:.0} MiB",
        "ProvChain (sled, flush per block)",
        data_triples / pc_wall,
        data_triples / pc_cpu.max(1e-9),
        store.triple_count(),
        rss1 - rss0
    );

    #[cfg(feature = "rocksdb")]
    let (ox, ox_kind) = (
        oxigraph::store::Store::open(dir.path().join("oxigraph"))?,
        "Oxigraph 0.4 (RocksDB)",
    );
    #[cfg(not(feature = "rocksdb"))]
    let (ox, ox_kind) = (oxigraph::store::Store::new()?, "Oxigraph 0.4 (in memory)");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for b in &chain {
        ox_ingest(&ox, b, triples)?;
    }
    let (ox_wall, ox_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!(
        "  {ox_kind:<32} {:>9.0} data triples/s  ({:>7.0} per CPU-s)  {} quads stored, RSS +{:.0} MiB",
        data_triples / ox_wall,
        data_triples / ox_cpu.max(1e-9),
        ox.len()?,
        rss_mib() - rss1
    );
    drop(chain);

    let limits = QueryLimits {
        timeout: Duration::from_secs(60),
        max_rows: 10_000_000,
    };
    let items = blocks * txs;
    let base = "http://example.org/supply/r1/";
    let entity = move |n: u64| {
        let (kind, act) = [
            ("batch", "production"),
            ("shipment", "transport"),
            ("reading", "measurement"),
        ][(n % 3) as usize];
        (format!("<{base}{kind}/{n}>"), format!("<{base}{act}/{n}>"))
    };
    type Case = (&'static str, Box<dyn Fn(u64) -> String>);
    let cases: Vec<Case> = vec![
        (
            "point lookup (ASK one triple)",
            Box::new(move |n| {
                let (e, a) = entity(n);
                format!("ASK {{ {e} <http://www.w3.org/ns/prov#wasGeneratedBy> {a} }}")
            }),
        ),
        (
            "subject lookup (~10 rows)",
            Box::new(move |n| {
                let (e, _) = entity(n);
                format!("SELECT ?p ?o WHERE {{ {e} ?p ?o }}")
            }),
        ),
        (
            "provenance (GRAPH ?g + metadata)",
            Box::new(move |n| {
                let (e, a) = entity(n);
                format!(
                    "SELECT ?g ?who ?block WHERE {{ GRAPH ?g {{ {e} <http://www.w3.org/ns/prov#wasGeneratedBy> {a} }} \
                     GRAPH <urn:provchain:chain> {{ ?g <http://www.w3.org/ns/prov#wasAttributedTo> ?who ; \
                     <urn:provchain:vocab#inBlock> ?block }} }}"
                )
            }),
        ),
    ];
    println!(
        "queries ({queries} of each, spread over the dataset, the two stores in turn; p50 / p99):"
    );
    for (name, make) in &cases {
        let (mut pc, mut oxt) = (Vec::new(), Vec::new());
        for i in 0..queries {
            let q = make((i * 7919 + 13) % items.max(1));
            let t = Instant::now();
            let a = provchain_answers(&store, &q, &limits)?;
            pc.push(t.elapsed());
            let t = Instant::now();
            let b = oxigraph_answers(&ox, &q)?;
            oxt.push(t.elapsed());
            if a == 0 || a != b {
                return Err(format!("answers differ ({a} vs {b}) or none for {q}").into());
            }
        }
        pc.sort();
        oxt.sort();
        println!(
            "  {name:<34} ProvChain {:>6.0} / {:>6.0} µs   {ox_kind} {:>6.0} / {:>6.0} µs",
            percentile(&pc, 0.5),
            percentile(&pc, 0.99),
            percentile(&oxt, 0.5),
            percentile(&oxt, 0.99)
        );
    }
    let join = "SELECT (COUNT(*) AS ?n) WHERE { ?e <http://www.w3.org/ns/prov#wasGeneratedBy> ?a . \
                ?a <http://www.w3.org/ns/prov#wasAssociatedWith> <http://example.org/supply/agent/7> }";
    let t = Instant::now();
    let a = count_value_provchain(&store, join, &limits)?;
    let pc_join = t.elapsed();
    let t = Instant::now();
    let b = count_value_oxigraph(&ox, join)?;
    let ox_join = t.elapsed();
    if a != b {
        return Err(format!("join counts differ: {a} vs {b}").into());
    }
    println!(
        "  {:<34} ProvChain {:>8.1} ms       {ox_kind} {:>8.1} ms   ({a} rows in both)",
        "two-pattern join (COUNT)",
        pc_join.as_secs_f64() * 1e3,
        ox_join.as_secs_f64() * 1e3
    );
    Ok(())
}
