//! The segment layout under load, crashes and query rewriting: merges keep every quad,
//! `kill -9` at any moment loses nothing reported committed and leaves nothing half-written,
//! and the query rewrites (`GRAPH ?g` narrowing, triple pattern order) never change an answer.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use provchain_consensus::{Block, Genesis, RdfFormat, Transaction};
use provchain_storage::{QueryLimits, Store};
use sophia_api::sparql::{SparqlDataset, SparqlResult};
use sophia_api::term::Term;
use sophia_sparql::SparqlWrapper;

fn limits() -> QueryLimits {
    QueryLimits {
        timeout: Duration::from_secs(30),
        max_rows: 1_000_000,
    }
}

/// Transactions for block `height`: Turtle with blank nodes, and N-Quads naming a shared
/// graph (so the dedup across transactions and blocks is exercised).
fn txs_for(g: &Genesis, height: u64, count: u64) -> Vec<Transaction> {
    (0..count)
        .map(|i| {
            let n = height * 1000 + i;
            if i % 3 == 2 {
                tx(
                    g,
                    RdfFormat::NQuads,
                    &format!(
                        "<http://ex.org/s{n}> <http://ex.org/p> \"{n}\" <http://ex.org/shared> .\n\
                         <http://ex.org/common> <http://ex.org/p> \"c\" <http://ex.org/shared> .\n\
                         <http://ex.org/s{n}> <http://ex.org/q> <http://ex.org/s{}> .\n",
                        n.saturating_sub(7)
                    ),
                    n,
                )
            } else {
                tx(
                    g,
                    RdfFormat::Turtle,
                    &format!(
                        "@prefix ex: <http://ex.org/> .\nex:s{n} a ex:Thing ; ex:p \"{n}\" ; \
                         ex:label \"thing {n}\"@en ; ex:part [ ex:v {i} ] .\n"
                    ),
                    n,
                )
            }
        })
        .collect()
}

fn next_block(g: &Genesis, store: &Store, count: u64) -> Block {
    let head = store.final_head().expect("head");
    let parent = store
        .block_by_height(head.height)
        .expect("read")
        .expect("head block");
    block(g, &parent, txs_for(g, head.height + 1, count))
}

/// The database with plain sled, once the store that had it open has let go of its lock.
fn raw_open(path: &std::path::Path) -> sled::Db {
    for _ in 0..50 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    sled::open(path).expect("raw open")
}

fn ask(store: &Store, q: &str) -> bool {
    let out = store.sparql(q, &limits()).expect("query");
    json(&out.body)["boolean"].as_bool().expect("boolean")
}

#[test]
fn merged_segments_keep_every_quad_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let mut committed = Vec::new();
    {
        let store = Store::open(dir.path(), &g).expect("open");
        for _ in 0..40 {
            let b = next_block(&g, &store, 6);
            store
                .commit_final(std::slice::from_ref(&b))
                .expect("commit");
            committed.push(b);
        }
        // Two blocks in one call.
        let b1 = next_block(&g, &store, 3);
        let b2 = block(&g, &b1, txs_for(&g, b1.header.height + 1, 3));
        store
            .commit_final(&[b1.clone(), b2.clone()])
            .expect("commit two");
        committed.extend([b1, b2]);
        assert!(
            store.storage_stats().segments <= provchain_storage::store::SYNC_MERGE_SEGMENTS + 1,
            "commits merge past the limit"
        );
        assert!(store.merge_segments().expect("merge") > 0);
        let stats = store.storage_stats();
        assert!(
            stats.segments <= 3 * 3 + 1,
            "merges keep few segments: {stats:?}"
        );
        let report = store.validate_integrity(&mut |_, _| {}).expect("validate");
        assert!(report.ok, "{report:?}");
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.final_head().expect("head").height, 42);
    let report = store.validate_integrity(&mut |_, _| {}).expect("validate");
    assert!(report.ok, "{report:?}");
    for b in &committed {
        for t in &b.transactions {
            let loc = store.tx_location(&t.id()).expect("read").expect("indexed");
            assert_eq!(loc.height, b.header.height);
        }
    }
    // Every subject of every block is queryable, old and new.
    for h in [1u64, 2, 17, 40, 42] {
        let n = h * 1000;
        assert!(
            ask(
                &store,
                &format!("ASK {{ <http://ex.org/s{n}> <http://ex.org/p> \"{n}\" }}")
            ),
            "height {h}"
        );
    }
    // The shared named graph holds each statement once although many transactions sent it.
    let out = store
        .sparql(
            "SELECT (COUNT(*) AS ?n) WHERE { GRAPH <http://ex.org/shared> { <http://ex.org/common> ?p ?o } }",
            &limits(),
        )
        .expect("count");
    assert_eq!(json(&out.body)["results"]["bindings"][0]["n"]["value"], "1");
}

/// Rows of a SELECT result as sorted N-Triples-ish strings, via sophia without the store's
/// query rewriting.
fn plain_rows(store: &Store, q: &str) -> BTreeSet<String> {
    let ds = store.dataset().union();
    let wrapper = SparqlWrapper(&ds);
    let query = wrapper.prepare_query(q).expect("parse");
    let SparqlResult::Bindings(b) = wrapper.query(&query).expect("query") else {
        panic!("not a SELECT");
    };
    let vars: Vec<String> = b.variables().iter().map(|v| v.to_string()).collect();
    b.into_iter()
        .map(|row| {
            let row = row.expect("row");
            vars.iter()
                .zip(row)
                .map(|(v, t)| {
                    let mut s = String::new();
                    if let Some(t) = t {
                        provchain_storage::term::write_nt(&t.borrow_term(), &mut s);
                    }
                    format!("{v}={s}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The same rows through [`Store::sparql`] (with the rewriting).
fn store_rows(store: &Store, q: &str) -> BTreeSet<String> {
    let out = store.sparql(q, &limits()).expect("query");
    let v = json(&out.body);
    let vars: Vec<String> = v["head"]["vars"]
        .as_array()
        .expect("vars")
        .iter()
        .map(|v| v.as_str().expect("var").to_owned())
        .collect();
    v["results"]["bindings"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            vars.iter()
                .map(|var| {
                    let cell = &row[var];
                    let s = match cell["type"].as_str() {
                        None => String::new(),
                        Some("uri") => format!("<{}>", cell["value"].as_str().unwrap_or("")),
                        Some("bnode") => format!("_:{}", cell["value"].as_str().unwrap_or("")),
                        Some(_) => {
                            let value = cell["value"].as_str().unwrap_or("");
                            let mut s = String::new();
                            let lit = match (cell["xml:lang"].as_str(), cell["datatype"].as_str()) {
                                (Some(l), _) => sophia_api::term::SimpleTerm::LiteralLanguage(
                                    value.into(),
                                    sophia_api::term::LanguageTag::new_unchecked(l.into()),
                                    None,
                                ),
                                (None, dt) => sophia_api::term::SimpleTerm::LiteralDatatype(
                                    value.into(),
                                    sophia_api::term::IriRef::new_unchecked(
                                        dt.unwrap_or("http://www.w3.org/2001/XMLSchema#string")
                                            .into(),
                                    ),
                                ),
                            };
                            provchain_storage::term::write_nt(&lit, &mut s);
                            s
                        }
                    };
                    format!("{var}={s}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn query_rewrites_never_change_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    for _ in 0..6 {
        let b = next_block(&g, &store, 5);
        store
            .commit_final(std::slice::from_ref(&b))
            .expect("commit");
    }
    let queries = [
        // The provenance question, with and without the chain metadata.
        "SELECT ?g WHERE { GRAPH ?g { <http://ex.org/s3001> <http://ex.org/p> \"3001\" } }",
        "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX pc: <urn:provchain:vocab#>
         SELECT ?g ?who ?b WHERE { GRAPH ?g { <http://ex.org/s2000> ?p ?o }
           GRAPH <urn:provchain:chain> { ?g prov:wasAttributedTo ?who ; pc:inBlock ?b } }",
        // A pattern in many graphs, a shared named graph, a literal with a language tag.
        "SELECT ?g ?s WHERE { GRAPH ?g { ?s <http://ex.org/p> \"c\" } }",
        "SELECT ?g ?s WHERE { GRAPH ?g { ?s <http://ex.org/label> \"thing 4003\"@en } }",
        "SELECT ?g ?s ?o WHERE { GRAPH ?g { ?s a <http://ex.org/Thing> ; <http://ex.org/part> ?x . ?x <http://ex.org/v> ?o } }",
        // Constants that match nothing, or only in the default graph's union view.
        "SELECT ?g WHERE { GRAPH ?g { <http://ex.org/nothing> ?p ?o } }",
        "SELECT ?g ?o WHERE { GRAPH ?g { <http://ex.org/s1000> <http://ex.org/q> ?o } }",
        // OPTIONAL, FILTER and a nested GRAPH with a bound name.
        "SELECT ?g ?l WHERE { GRAPH ?g { ?s <http://ex.org/p> \"5004\" OPTIONAL { ?s <http://ex.org/label> ?l } } }",
        "SELECT ?g ?v WHERE { GRAPH ?g { ?s <http://ex.org/p> ?v FILTER(?v = \"1001\") } }",
        "SELECT ?g WHERE { GRAPH ?g { <http://ex.org/s1001> ?p ?o GRAPH <http://ex.org/shared> { ?a ?b ?c } } }",
        // Metadata graph found through a data-free pattern.
        "SELECT ?g ?b WHERE { GRAPH ?g { ?b <urn:provchain:vocab#height> 3 } }",
        // A subquery is left alone (it yields a row per graph).
        "SELECT ?g ?n WHERE { GRAPH ?g { SELECT (COUNT(*) AS ?n) WHERE { <http://ex.org/s1000> ?p ?o } } }",
        // Joins whose triple patterns are reordered: written least selective first, chains,
        // blank nodes, a cross product, an empty pattern, OPTIONAL and FILTER around them.
        "SELECT ?s ?x ?o WHERE { ?s <http://ex.org/part> ?x . ?x <http://ex.org/v> ?o . ?s a <http://ex.org/Thing> }",
        "SELECT ?s ?t WHERE { ?s <http://ex.org/q> ?t . ?s <http://ex.org/p> \"2002\" }",
        "SELECT ?s WHERE { ?s <http://ex.org/part> _:b . _:b <http://ex.org/v> 1 }",
        "SELECT ?a ?b WHERE { <http://ex.org/s1000> <http://ex.org/p> ?a . <http://ex.org/s2000> <http://ex.org/p> ?b }",
        "SELECT ?s WHERE { ?s a <http://ex.org/Thing> . ?s <http://ex.org/nothing> ?o }",
        "SELECT ?s ?l ?o WHERE { ?s ?p ?o . ?s <http://ex.org/label> ?l FILTER(?o != \"c\") OPTIONAL { ?s <http://ex.org/part> ?x . ?x <http://ex.org/v> ?n } }",
        "SELECT ?g ?s ?n WHERE { GRAPH ?g { ?x <http://ex.org/v> ?n . ?s <http://ex.org/part> ?x . ?s <http://ex.org/p> \"3001\" } }",
    ];
    for q in queries {
        let narrowed = store_rows(&store, q);
        let plain = plain_rows(&store, q);
        assert_eq!(narrowed, plain, "{q}");
    }
    // The provenance query found its one graph; the reordered joins found rows.
    assert_eq!(store_rows(&store, queries[0]).len(), 1);
    for q in &queries[12..15] {
        assert!(!store_rows(&store, q).is_empty(), "no rows: {q}");
    }
}

/// A writer that commits until it is killed, printing each committed height (run by
/// [`kill_9_at_any_moment_loses_nothing_committed`] in a child process).
#[test]
#[ignore = "run as a child process by kill_9_at_any_moment_loses_nothing_committed"]
fn crash_writer() {
    let Ok(dir) = std::env::var("PROVCHAIN_CRASH_DIR") else {
        return;
    };
    let g = genesis();
    let store = Store::open(std::path::Path::new(&dir), &g).expect("open");
    // Merges run alongside, as in the node, so kills land in them too.
    let merger = store.clone();
    std::thread::spawn(move || {
        loop {
            merger.merge_segments().expect("merge");
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    loop {
        let head = store.final_head().expect("head").height;
        let b = next_block(&g, &store, 4 + head % 7);
        if head % 5 == 4 {
            let b2 = block(&g, &b, txs_for(&g, b.header.height + 1, 2));
            store.commit_final(&[b, b2]).expect("commit");
        } else {
            store
                .commit_final(std::slice::from_ref(&b))
                .expect("commit");
        }
        println!("committed {}", store.final_head().expect("head").height);
    }
}

#[test]
fn kill_9_at_any_moment_loses_nothing_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut last_reported = 0u64;
    for round in 0..6 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "crash_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PROVCHAIN_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, heights) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(h) = line.strip_prefix("committed ") {
                    let _ = sender.send(h.trim().parse::<u64>().expect("height"));
                }
            }
        });
        // Let it commit a few blocks, then kill it at an arbitrary point of its work.
        let wanted = 2 + rand() % 12;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = 0;
        while seen < wanted && Instant::now() < deadline {
            match heights.recv_timeout(Duration::from_millis(100)) {
                Ok(h) => {
                    last_reported = h;
                    seen += 1;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rand() % 30_000));
        child.kill().expect("kill -9");
        let _ = child.wait();
        reader.join().expect("reader");
        // Commits reported before the kill but read after it count too.
        while let Ok(h) = heights.try_recv() {
            last_reported = h;
        }
        let store = Store::open(dir.path(), &g).expect("reopen after kill -9");
        let head = store.final_head().expect("head").height;
        assert!(
            head >= last_reported,
            "round {round}: head {head} is below the reported committed height {last_reported}"
        );
        let report = store.validate_integrity(&mut |_, _| {}).expect("validate");
        assert!(report.ok, "round {round}: {report:?}");
        for h in [1, head / 2, head] {
            if h == 0 {
                continue;
            }
            let n = h * 1000;
            assert!(
                ask(
                    &store,
                    &format!("ASK {{ <http://ex.org/s{n}> <http://ex.org/p> \"{n}\" }}")
                ),
                "round {round}: block {h} data missing"
            );
        }
        eprintln!("round {round}: killed at head {head}");
        last_reported = head;
    }
    assert!(last_reported > 0, "the writer never committed");
}

#[test]
fn stale_pages_of_an_interrupted_commit_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    {
        let store = Store::open(dir.path(), &g).expect("open");
        let b = next_block(&g, &store, 3);
        store.commit_final(&[b]).expect("commit");
    }
    // What a crash between writing a segment and the commit point leaves: pages of an
    // unreferenced segment and a chunk of terms past the recorded next id.
    let (segments_before, terms_before) = {
        let db = raw_open(dir.path());
        let segs = db.open_tree("segments").expect("tree");
        let terms = db.open_tree("terms").expect("tree");
        let before = (segs.len(), terms.len());
        let mut k = 999u64.to_be_bytes().to_vec();
        k.extend_from_slice(&[0, 0, 0, 0, 0]);
        segs.insert(k, b"garbage".to_vec()).expect("insert");
        terms
            .insert(1_000_000u64.to_be_bytes(), b"garbage".to_vec())
            .expect("insert");
        db.flush().expect("flush");
        before
    };
    let store = Store::open(dir.path(), &g).expect("reopen");
    let report = store.validate_integrity(&mut |_, _| {}).expect("validate");
    assert!(report.ok, "{report:?}");
    let b = next_block(&g, &store, 3);
    store.commit_final(&[b]).expect("commit after repair");
    drop(store);
    let db = raw_open(dir.path());
    assert!(db.open_tree("segments").expect("tree").len() > segments_before);
    assert!(
        db.open_tree("terms")
            .expect("tree")
            .get(1_000_000u64.to_be_bytes())
            .expect("get")
            .is_none()
    );
    let _ = terms_before;
}

#[test]
fn large_blocks_round_trip_through_pieces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let big = |h: u64| -> Vec<Transaction> {
        let mut txs = txs_for(&g, h, 40);
        // One statement with a 20 KB literal: its term chunk is larger than a piece too.
        txs.push(tx(
            &g,
            RdfFormat::NTriples,
            &format!(
                "<http://ex.org/big{h}> <http://ex.org/p> \"{}\" .\n",
                "x".repeat(20_000)
            ),
            h,
        ));
        txs
    };
    let (b1, b2, b3);
    {
        let store = Store::open(dir.path(), &g).expect("open");
        b1 = block(&g, &g.block(), big(1));
        b2 = block(&g, &b1, big(2));
        b3 = block(&g, &b2, vec![]);
        assert!(provchain_consensus::Encode::encode(&b1).len() > 20_000);
        store.put_pending(&b1).expect("pending");
        store.put_pending(&b2).expect("pending");
        let mut pending = store.pending_blocks().expect("pending");
        pending.sort_by_key(|b| b.header.height);
        assert_eq!(pending, vec![b1.clone(), b2.clone()]);
        store.remove_pending(&b2.hash()).expect("remove");
        assert_eq!(store.pending_blocks().expect("pending"), vec![b1.clone()]);
        store
            .commit_final(&[b1.clone(), b2.clone(), b3.clone()])
            .expect("commit");
        // Committing removed every piece of the pending copy.
        assert!(store.pending_blocks().expect("pending").is_empty());
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.block_by_height(1).expect("read"), Some(b1.clone()));
    assert_eq!(
        store.block_by_hash(&b2.hash()).expect("read"),
        Some(b2.clone())
    );
    assert_eq!(
        store.header_by_height(2).expect("read"),
        Some(b2.header.clone())
    );
    let range = store.blocks_range(1, 2).expect("range");
    assert_eq!(range, vec![b1.clone(), b2.clone()]);
    assert_eq!(store.blocks_range(0, 10).expect("range").len(), 4);
    let report = store.validate_integrity(&mut |_, _| {}).expect("validate");
    assert!(report.ok, "{report:?}");
    let out = store
        .sparql(
            "SELECT (STRLEN(?o) AS ?n) WHERE { <http://ex.org/big2> <http://ex.org/p> ?o }",
            &limits(),
        )
        .expect("query");
    assert_eq!(
        json(&out.body)["results"]["bindings"][0]["n"]["value"],
        "20000"
    );
}
