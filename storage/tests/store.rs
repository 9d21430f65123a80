//! The store against real sled databases in temporary directories.

mod common;

use std::time::Duration;

use common::*;
use provchain_consensus::{Decode, Encode, Genesis, Hash, RdfFormat, Transaction};
use provchain_storage::{ParsedTx, QueryLimits, SparqlError, StorageError, Store, vocab};
use serde_json::json;

fn limits() -> QueryLimits {
    QueryLimits {
        timeout: Duration::from_secs(10),
        max_rows: 1000,
    }
}

fn select(store: &Store, q: &str) -> serde_json::Value {
    let out = store.sparql(q, &limits()).expect("query runs");
    assert_eq!(out.content_type, "application/sparql-results+json");
    json(&out.body)
}

fn ask(store: &Store, q: &str) -> bool {
    let v = select(store, q);
    v["boolean"].as_bool().expect("boolean result")
}

#[test]
fn open_commit_reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let t1 = tx(
        &g,
        RdfFormat::NTriples,
        "<http://test> <http://p> \"v\" .\n",
        1_000,
    );
    let t2 = tx_with_client(
        &g,
        RdfFormat::Turtle,
        "@prefix ex: <http://ex.org/> .\nex:a ex:knows ex:b , ex:c .\nex:b ex:name \"Bob\"@en .",
        2_000,
        Some("alice"),
    );
    let (b1, b2, id1, id2);
    {
        let store = Store::open(dir.path(), &g).expect("open");
        assert_eq!(store.final_head().expect("head").height, 0);
        assert_eq!(store.final_head().expect("head"), g.block().header);
        let genesis_block = store
            .block_by_height(0)
            .expect("read")
            .expect("genesis stored");
        b1 = block(&g, &genesis_block, vec![t1.clone()]);
        b2 = block(&g, &b1, vec![t2.clone()]);
        id1 = t1.id();
        id2 = t2.id();
        let stats = store
            .commit_final(&[b1.clone(), b2.clone()])
            .expect("commit");
        assert_eq!((stats.blocks, stats.transactions), (2, 2));
        assert!(stats.triples >= 4);
        assert_eq!(store.data_triple_count(), 4);
        assert!(store.triple_count() > 4);
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.final_head().expect("head"), b2.header);
    assert_eq!(store.block_by_height(1).expect("read"), Some(b1.clone()));
    assert_eq!(
        store.block_by_hash(&b2.hash()).expect("read"),
        Some(b2.clone())
    );
    assert_eq!(store.height_of(&b2.hash()).expect("read"), Some(2));
    assert_eq!(store.block_by_hash(&Hash([7; 32])).expect("read"), None);
    let range = store.blocks_range(0, 10).expect("range");
    assert_eq!(
        range.iter().map(|b| b.header.height).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(store.blocks_range(2, 10).expect("range").len(), 1);
    let loc = store.tx_location(&id2).expect("read").expect("indexed");
    assert_eq!((loc.height, loc.index, loc.triples), (2, 0, 3));
    let (back, loc1) = store.transaction(&id1).expect("read").expect("found");
    assert_eq!(back, t1);
    assert_eq!(loc1.height, 1);
    assert_eq!(store.data_triple_count(), 4);
    assert!(ask(&store, r#"ASK { <http://test> <http://p> "v" }"#));
    assert!(ask(
        &store,
        r#"ASK { <http://ex.org/b> <http://ex.org/name> "Bob"@en }"#
    ));
    let who = select(
        &store,
        &format!(
            "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX pc: <urn:provchain:vocab#>
             SELECT ?who ?client WHERE {{ GRAPH <urn:provchain:chain> {{
               <{}> prov:wasAttributedTo ?who ; pc:client ?client }} }}",
            vocab::tx_iri(&id2)
        ),
    );
    let row = &who["results"]["bindings"][0];
    assert_eq!(row["who"]["value"], vocab::node_iri(&key(2).public()));
    assert_eq!(row["client"], json!({"type": "literal", "value": "alice"}));
    drop(store);

    let mut other = g.clone();
    other.network_id = "another".into();
    match Store::open(dir.path(), &other) {
        Err(StorageError::GenesisMismatch { stored, configured }) => {
            assert_eq!(stored, g.hash());
            assert_eq!(configured, other.hash());
        }
        other => panic!("expected GenesisMismatch, got {other:?}"),
    }
}

#[test]
fn commit_rejects_blocks_that_do_not_extend_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let gb = g.block();
    let b1 = block(
        &g,
        &gb,
        vec![tx(
            &g,
            RdfFormat::NTriples,
            "<http://a> <http://b> <http://c> .",
            1,
        )],
    );
    let b2 = block(&g, &b1, vec![]);
    let before = store.triple_count();
    // Skips height 1.
    assert!(matches!(
        store.commit_final(std::slice::from_ref(&b2)),
        Err(StorageError::NotNextBlock { .. })
    ));
    // Second block does not link to the first.
    let stray = block(&g, &gb, vec![]);
    assert!(matches!(
        store.commit_final(&[b1.clone(), stray]),
        Err(StorageError::NotNextBlock {
            expected_height: 2,
            ..
        })
    ));
    // A valid block followed by one with unparseable RDF: nothing is written.
    let bad = block(
        &g,
        &b1,
        vec![tx(
            &g,
            RdfFormat::NTriples,
            "<http://a> <http://b> \"x\"",
            2,
        )],
    );
    assert!(matches!(
        store.commit_final(&[b1.clone(), bad]),
        Err(StorageError::InvalidRdf { height: 2, .. })
    ));
    assert_eq!(store.final_head().expect("head").height, 0);
    assert_eq!(store.block_by_height(1).expect("read"), None);
    assert_eq!(store.height_of(&b1.hash()).expect("read"), None);
    assert_eq!(store.triple_count(), before);
    assert!(!ask(&store, "ASK { <http://a> <http://b> <http://c> }"));
    // The good sequence then commits; replaying it is rejected.
    store
        .commit_final(&[b1.clone(), b2.clone()])
        .expect("commit");
    assert!(store.commit_final(std::slice::from_ref(&b1)).is_err());
    assert_eq!(store.final_head().expect("head").height, 2);
    // A transaction already in the chain is refused.
    let dup = block(&g, &b2, vec![b1.transactions[0].clone()]);
    assert!(matches!(
        store.commit_final(&[dup]),
        Err(StorageError::DuplicateTransaction { .. })
    ));
}

#[test]
fn pending_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let gb = g.block();
    let a = block(
        &g,
        &gb,
        vec![tx(&g, RdfFormat::Turtle, "<http://x> <http://y> 1 .", 5)],
    );
    let b = block(&g, &a, vec![]);
    store.put_pending(&a).expect("put");
    store.put_pending(&b).expect("put");
    let mut got = store.pending_blocks().expect("list");
    got.sort_by_key(|x| x.header.height);
    assert_eq!(got, vec![a.clone(), b.clone()]);
    store.remove_pending(&b.hash()).expect("remove");
    assert_eq!(store.pending_blocks().expect("list"), vec![a.clone()]);
    drop(store);
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.pending_blocks().expect("list"), vec![a.clone()]);
    // Finalising a block removes it from the pending store in the same commit.
    store.commit_final(&[a]).expect("commit");
    assert!(store.pending_blocks().expect("list").is_empty());
}

#[test]
fn sparql_results_follow_the_w3c_json_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let data = "@prefix ex: <http://ex.org/> .\n\
                ex:alice ex:knows ex:bob .\nex:bob ex:name \"Bob\" .\nex:bob ex:age 42 .";
    let t = tx(&g, RdfFormat::Turtle, data, 10);
    let b1 = block(&g, &g.block(), vec![t.clone()]);
    store
        .commit_final(std::slice::from_ref(&b1))
        .expect("commit");

    let v = select(
        &store,
        "PREFIX ex: <http://ex.org/> SELECT ?who ?name WHERE { ?who ex:knows ?f . ?f ex:name ?name }",
    );
    assert_eq!(
        v,
        json!({"head": {"vars": ["who", "name"]}, "results": {"bindings": [
            {"who": {"type": "uri", "value": "http://ex.org/alice"},
             "name": {"type": "literal", "value": "Bob"}}
        ]}})
    );
    let v = select(&store, "SELECT ?age WHERE { ?s <http://ex.org/age> ?age }");
    assert_eq!(
        v["results"]["bindings"][0]["age"],
        json!({"type": "literal", "value": "42",
               "datatype": "http://www.w3.org/2001/XMLSchema#integer"})
    );
    assert_eq!(
        select(
            &store,
            "ASK { <http://ex.org/alice> <http://ex.org/knows> <http://ex.org/bob> }"
        ),
        json!({"head": {}, "boolean": true})
    );
    assert_eq!(
        select(
            &store,
            "ASK { <http://ex.org/bob> <http://ex.org/knows> <http://ex.org/alice> }"
        ),
        json!({"head": {}, "boolean": false})
    );
    // GRAPH ?g finds the transaction's graph.
    let v = select(
        &store,
        "SELECT ?g WHERE { GRAPH ?g { <http://ex.org/bob> <http://ex.org/name> \"Bob\" } }",
    );
    assert_eq!(
        v["results"]["bindings"],
        json!([{"g": {"type": "uri", "value": vocab::tx_iri(&t.id())}}])
    );
    // Who asserted the triple, and in which block.
    let v = select(
        &store,
        "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX pc: <urn:provchain:vocab#>
         SELECT ?who ?block ?height ?n WHERE {
           GRAPH ?g { <http://ex.org/bob> <http://ex.org/name> \"Bob\" }
           GRAPH <urn:provchain:chain> { ?g prov:wasAttributedTo ?who ; pc:inBlock ?block ; pc:tripleCount ?n .
                                         ?block pc:height ?height } }",
    );
    let row = &v["results"]["bindings"][0];
    assert_eq!(row["who"]["value"], vocab::node_iri(&key(2).public()));
    assert_eq!(row["block"]["value"], vocab::block_iri(&b1.hash()));
    assert_eq!(row["height"]["value"], "1");
    assert_eq!(row["n"]["value"], "3");
    // The default graph is the union: metadata and data join without GRAPH.
    let v = select(
        &store,
        "PREFIX pc: <urn:provchain:vocab#> SELECT ?h WHERE { ?b a pc:Block ; pc:height ?h } ORDER BY ?h",
    );
    let hs: Vec<_> = v["results"]["bindings"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["h"]["value"].clone())
        .collect();
    assert_eq!(hs, vec![json!("0"), json!("1")]);
    // CONSTRUCT gives N-Triples.
    let out = store
        .sparql(
            "CONSTRUCT { ?s <http://ex.org/n> ?o } WHERE { ?s <http://ex.org/name> ?o }",
            &limits(),
        )
        .expect("construct");
    assert_eq!(out.content_type, "application/n-triples");
    assert_eq!(
        String::from_utf8(out.body).expect("utf8"),
        "<http://ex.org/bob> <http://ex.org/n> \"Bob\" .\n"
    );
}

#[test]
fn sparql_errors_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let mut doc = String::new();
    for i in 0..300 {
        doc.push_str(&format!("<http://s/{i}> <http://p> \"{i}\" .\n"));
    }
    store
        .commit_final(&[block(
            &g,
            &g.block(),
            vec![tx(&g, RdfFormat::NTriples, &doc, 1)],
        )])
        .expect("commit");
    assert!(matches!(
        store.sparql("SELEC ?x WHERE {", &limits()),
        Err(SparqlError::Parse(_))
    ));
    let small = QueryLimits {
        timeout: Duration::from_secs(10),
        max_rows: 10,
    };
    assert!(matches!(
        store.sparql("SELECT ?s WHERE { ?s <http://p> ?o }", &small),
        Err(SparqlError::TooManyRows(10))
    ));
    // A cross product far too large to finish within the deadline.
    let quick = QueryLimits {
        timeout: Duration::from_millis(200),
        max_rows: usize::MAX,
    };
    let started = std::time::Instant::now();
    let r = store.sparql(
        "SELECT (COUNT(*) AS ?n) WHERE { ?a <http://p> ?x . ?b <http://p> ?y . ?c <http://p> ?z }",
        &quick,
    );
    assert!(matches!(r, Err(SparqlError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn blank_nodes_are_scoped_per_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let t1 = tx(&g, RdfFormat::Turtle, "_:b <http://p> \"1\" .", 1);
    let t2 = tx(&g, RdfFormat::Turtle, "_:b <http://p> \"1\" .", 2);
    let t3 = tx(
        &g,
        RdfFormat::NTriples,
        "_:b <http://p> \"1\" .\n_:b <http://q> _:c .",
        3,
    );
    let b1 = block(&g, &g.block(), vec![t1, t2]);
    let b2 = block(&g, &b1, vec![t3]);
    store.commit_final(&[b1]).expect("commit");
    store.commit_final(&[b2]).expect("commit");
    let v = select(
        &store,
        "SELECT (COUNT(DISTINCT ?s) AS ?n) WHERE { ?s <http://p> \"1\" }",
    );
    assert_eq!(v["results"]["bindings"][0]["n"]["value"], "3");
    // Within one transaction a label still denotes one node.
    assert!(ask(&store, "ASK { ?s <http://p> \"1\" ; <http://q> ?c }"));
}

#[test]
fn integrity_validation_detects_a_flipped_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    {
        let store = Store::open(dir.path(), &g).expect("open");
        let mut parent = g.block();
        for i in 0..4u64 {
            let t = tx(
                &g,
                RdfFormat::NQuads,
                &format!(
                    "<http://s/{i}> <http://p> \"{i}\" .\n<http://s/{i}> <http://p> \"g\" <http://graph/{i}> .\n"
                ),
                i,
            );
            let b = block(&g, &parent, vec![t]);
            store
                .commit_final(std::slice::from_ref(&b))
                .expect("commit");
            parent = b;
        }
        let mut calls = 0;
        let report = store
            .validate_integrity(&mut |done, total| {
                calls += 1;
                assert!(done <= total);
            })
            .expect("validate");
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked_blocks, 5);
        assert_eq!(report.checked_transactions, 4);
        assert_eq!(calls, 5);
        assert!(report.checks.iter().all(|c| c.passed));
    }
    // Flip one byte in the stored block at height 2 (a byte of the proposer signature area).
    {
        // sled's I/O threads can hold the lock for a moment after the store is dropped.
        let db = (0..50)
            .find_map(|_| {
                sled::open(dir.path())
                    .map_err(|_| std::thread::sleep(Duration::from_millis(20)))
                    .ok()
            })
            .expect("raw open");
        let blocks = db.open_tree("blocks").expect("tree");
        let key = 2u64.to_be_bytes();
        let mut v = blocks.get(key).expect("get").expect("present").to_vec();
        let n = v.len();
        v[n - 10] ^= 0x01;
        // Still decodes: the damage is only visible to verification.
        assert!(provchain_consensus::Block::decode(&v).is_ok());
        blocks.insert(key, v).expect("insert");
        db.flush().expect("flush");
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    let report = store.validate_integrity(&mut |_, _| {}).expect("validate");
    assert!(!report.ok);
    let first = report.first_error.clone().expect("an error");
    assert_eq!(first.height, 2, "{first:?}");
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "block_seals" && !c.passed)
    );
    let json = serde_json::to_value(&report).expect("serialise");
    assert_eq!(json["first_error"]["height"], 2);
}

#[test]
fn nquads_graphs_are_kept_and_reserved_graphs_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let t = tx(
        &g,
        RdfFormat::NQuads,
        "<http://a> <http://b> <http://c> <http://g1> .\n<http://a> <http://b> <http://d> .\n",
        1,
    );
    let id = t.id();
    store
        .commit_final(&[block(&g, &g.block(), vec![t])])
        .expect("commit");
    assert!(ask(
        &store,
        "ASK { GRAPH <http://g1> { <http://a> <http://b> <http://c> } }"
    ));
    assert!(ask(
        &store,
        &format!(
            "ASK {{ GRAPH <{}> {{ <http://a> <http://b> <http://d> }} }}",
            vocab::tx_iri(&id)
        )
    ));
    assert!(ask(
        &store,
        &format!(
            "ASK {{ GRAPH <urn:provchain:chain> {{ <{}> <urn:provchain:vocab#namedGraph> <http://g1> }} }}",
            vocab::tx_iri(&id)
        )
    ));
    let forged = "<urn:provchain:tx:00> <http://www.w3.org/ns/prov#wasAttributedTo> <urn:provchain:node:evil> <urn:provchain:chain> .\n";
    assert!(provchain_storage::rdf::parse(RdfFormat::NQuads, forged, "x").is_err());
    let _ = Encode::encode(&g);
}

#[test]
fn statement_graphs_names_the_asserting_transactions() {
    use sophia_api::term::{IriRef, Term};
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let t1 = tx(
        &g,
        RdfFormat::NTriples,
        "<http://test> <http://p> \"v\" .",
        1,
    );
    let t2 = tx(&g, RdfFormat::Turtle, "<http://test> <http://p> \"v\" .", 2);
    store
        .commit_final(&[block(&g, &g.block(), vec![t1.clone(), t2.clone()])])
        .expect("commit");
    let s = IriRef::new_unchecked("http://test");
    let p = IriRef::new_unchecked("http://p");
    let graphs = store.statement_graphs(s, p, "v").expect("lookup");
    let mut names: Vec<String> = graphs
        .iter()
        .filter_map(|t| t.iri().map(|i| i.as_str().to_owned()))
        .collect();
    names.sort();
    let mut expected = vec![vocab::tx_iri(&t1.id()), vocab::tx_iri(&t2.id())];
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn governance_items_are_indexed_and_described_in_the_chain_graph() {
    use provchain_consensus::{Block, GovernanceAction, Proposal, Vote};
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let genesis_block = g.block();
    let b1 = block(&g, &genesis_block, vec![]);
    let added = key(9).public();
    let proposal = Proposal::sign(GovernanceAction::Add(added), 7, &key(1), &g.hash());
    let vote = Vote::sign(proposal.id(), &key(1), &g.hash());
    let b2 = Block::seal_with_governance(
        &b1.header,
        b1.header.slot + 1,
        1_700_000_000_000 + (b1.header.slot + 1) * 1000,
        vec![],
        vec![proposal.clone().into(), vote.clone().into()],
        &key(1),
        &g.hash(),
    );
    let b3 = block(&g, &b2, vec![]);
    store.commit_final(&[b1, b2.clone(), b3]).expect("commit");
    assert_eq!(store.governance_heights().expect("index"), vec![2]);
    drop(store);

    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.governance_heights().expect("index"), vec![2]);
    assert_eq!(
        store.block_by_height(2).expect("read").expect("block 2"),
        b2
    );
    let q = format!(
        "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX pc: <urn:provchain:vocab#> \
         ASK {{ GRAPH <urn:provchain:chain> {{ \
           <urn:provchain:proposal:{p}> a prov:Activity, pc:AuthorityProposal ; \
             pc:action \"add\" ; pc:authority <urn:provchain:node:{k}> ; \
             prov:wasAssociatedWith <urn:provchain:node:{by}> ; \
             pc:inBlock <urn:provchain:block:{b}> . \
           ?v a pc:AuthorityVote ; pc:proposal <urn:provchain:proposal:{p}> . }} }}",
        p = proposal.id().to_hex(),
        k = added.to_hex(),
        by = key(1).public().to_hex(),
        b = b2.hash().to_hex(),
    );
    assert!(ask(&store, &q));
}

/// Blank nodes, a shared named graph, `big` (the third) and a typed literal.
fn mixed_txs(g: &Genesis, big: (RdfFormat, &str)) -> [Transaction; 4] {
    [
        tx(
            g,
            RdfFormat::Turtle,
            "_:b <http://p> \"1\" ; <http://q> _:c .",
            1,
        ),
        tx(
            g,
            RdfFormat::NQuads,
            "<http://s> <http://p> \"x\"@en <http://g/shared> .\n_:n <http://p> <http://o> .",
            2,
        ),
        tx(g, big.0, big.1, 3),
        tx(g, RdfFormat::Turtle, "<http://s> <http://p> 7 .", 4),
    ]
}

/// `got` holds what `expected` holds: every quad, the triple count, each transaction's
/// location and digest; and its integrity check passes.
fn assert_same_store(expected: &Store, got: &Store, txs: &[Transaction]) {
    let all = "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { ?s ?p ?o } } ORDER BY ?g ?s ?p ?o";
    let rows = select(expected, all);
    assert!(rows["results"]["bindings"].as_array().expect("rows").len() > 150);
    assert_eq!(rows, select(got, all));
    assert_eq!(expected.triple_count(), got.triple_count());
    for t in txs {
        assert_eq!(
            expected.tx_digest(&t.id()).expect("digest"),
            got.tx_digest(&t.id()).expect("digest"),
        );
        assert_eq!(
            expected
                .transaction(&t.id())
                .expect("read")
                .map(|(_, loc)| loc),
            got.transaction(&t.id()).expect("read").map(|(_, loc)| loc),
        );
    }
    assert!(got.validate_integrity(&mut |_, _| {}).expect("validate").ok);
}

#[test]
fn a_commit_given_parses_made_ahead_stores_what_parsing_at_commit_stores() {
    let g = genesis();
    let ring: String = (0..600)
        .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", (i + 1) % 600))
        .collect();
    let txs = mixed_txs(&g, (RdfFormat::NTriples, &ring));
    let b1 = block(&g, &g.block(), txs[..2].to_vec());
    let b2 = block(&g, &b1, txs[2..].to_vec());
    // Every transaction parsed ahead but the last, which the commit parses itself.
    let parsed: std::collections::HashMap<Hash, std::sync::Arc<ParsedTx>> = txs[..3]
        .iter()
        .map(|t| {
            let id = t.id();
            let p = ParsedTx::parse(&id, t).expect("parses");
            (id, std::sync::Arc::new(p))
        })
        .collect();
    assert_eq!(parsed[&txs[0].id()].statements(), 2);
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let here = Store::open(dir_a.path(), &g).expect("open");
    let ahead = Store::open(dir_b.path(), &g).expect("open");
    here.commit_final(&[b1.clone(), b2.clone()])
        .expect("commit");
    ahead.commit_final_parsed(&[b1], &parsed).expect("commit 1");
    ahead.commit_final_parsed(&[b2], &parsed).expect("commit 2");

    assert_same_store(&here, &ahead, &txs);
}

/// Turtle with `n` statements of terms no other document uses (long IRIs and literals, so
/// that their term chunks span several values).
fn many_terms(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "<http://example.org/{tag}/item/{i:05}/with-a-long-path-to-fill-term-chunks> \
                 <http://example.org/{tag}/observed> \"reading {i} of {tag}, long enough\" .\n"
            )
        })
        .collect()
}

/// The canonical digest of `t`'s document.
fn digest_of(t: &Transaction) -> [u8; 32] {
    *ParsedTx::parse(&t.id(), t)
        .expect("parses")
        .digest()
        .as_ref()
        .expect("has a digest")
}

#[test]
fn a_prepared_commit_stores_what_a_plain_commit_stores_and_a_dropped_one_leaves_nothing() {
    let g = genesis();
    let txs = mixed_txs(&g, (RdfFormat::Turtle, &many_terms("kept", 150)));
    // A block at height 1 that loses to `b1`: its transaction's terms fill several chunks
    // under ids that `b1` and `b2` then use for other terms.
    let lost = tx(&g, RdfFormat::Turtle, &many_terms("lost", 200), 5);
    let lost_digest = digest_of(&lost);
    let fork = block(&g, &g.block(), vec![lost.clone(), txs[3].clone()]);
    let b1 = block(&g, &g.block(), txs[..2].to_vec());
    let b2 = block(&g, &b1, txs[2..].to_vec());
    let none = std::collections::HashMap::new();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let plain = Store::open(dir_a.path(), &g).expect("open");
    plain
        .commit_final(&[b1.clone(), b2.clone()])
        .expect("commit");
    {
        let ahead = Store::open(dir_b.path(), &g).expect("open");
        assert!(
            !ahead
                .prepare_commit(std::slice::from_ref(&b2), &none)
                .expect("prepare"),
            "b2 does not extend the final head yet"
        );
        assert!(ahead.prepare_commit(&[fork], &none).expect("prepare"));
        // Prepared, not committed: nothing of it is visible.
        assert_eq!(ahead.tx_digest(&lost.id()).expect("digest"), None);
        assert!(
            ahead
                .transactions_by_digest(&lost_digest, 10)
                .expect("lookup")
                .is_empty()
        );
        // A refused commit drops the preparation too (its chunks would shadow b1's terms).
        assert!(matches!(
            ahead.commit_final(std::slice::from_ref(&b2)),
            Err(StorageError::NotNextBlock { .. })
        ));
        let stats = ahead
            .commit_final(std::slice::from_ref(&b1))
            .expect("commit 1");
        assert!(!stats.prepared, "prepared for another block");
        assert!(
            ahead
                .prepare_commit(std::slice::from_ref(&b2), &none)
                .expect("prepare")
        );
        let stats = ahead
            .commit_final(std::slice::from_ref(&b2))
            .expect("commit 2");
        assert!(stats.prepared);
        assert_eq!(stats.transactions, 2);
    }
    // Compared after a reopen: the prepared writes were durable, the dropped ones are gone.
    let ahead = Store::open(dir_b.path(), &g).expect("reopen");
    assert_same_store(&plain, &ahead, &txs);
    assert!(!ask(
        &ahead,
        "ASK { GRAPH ?g { ?s <http://example.org/lost/observed> ?o } }"
    ));
    assert_eq!(ahead.tx_digest(&lost.id()).expect("digest"), None);
    assert!(
        ahead
            .transactions_by_digest(&lost_digest, 10)
            .expect("lookup")
            .is_empty()
    );
}

#[test]
fn a_commit_prepared_before_a_crash_leaves_no_trace_after_reopening() {
    let g = genesis();
    let dir = tempfile::tempdir().expect("tempdir");
    let lost = tx(&g, RdfFormat::Turtle, &many_terms("crash", 200), 1);
    let lost_digest = digest_of(&lost);
    let first = block(&g, &g.block(), vec![lost.clone()]);
    {
        let store = Store::open(dir.path(), &g).expect("open");
        assert!(
            store
                .prepare_commit(&[first], &std::collections::HashMap::new())
                .expect("prepare")
        );
        // Dropped without its commit, as a crash would leave it.
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.final_head().expect("head").height, 0);
    assert_eq!(store.tx_digest(&lost.id()).expect("digest"), None);
    // The same transaction, final in another place: found there, and only there.
    let other = tx(&g, RdfFormat::Turtle, &many_terms("other", 100), 2);
    let b1 = block(&g, &g.block(), vec![other.clone(), lost.clone()]);
    store.commit_final(&[b1]).expect("commit");
    let found = store
        .transactions_by_digest(&lost_digest, 10)
        .expect("lookup");
    let at: Vec<_> = found
        .iter()
        .map(|(id, loc)| (*id, loc.height, loc.index))
        .collect();
    assert_eq!(at, vec![(lost.id(), 1, 1)]);
    let q =
        "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s <http://example.org/crash/observed> ?o } }";
    assert_eq!(
        select(&store, q)["results"]["bindings"][0]["n"]["value"],
        "200"
    );
    assert!(
        store
            .validate_integrity(&mut |_, _| {})
            .expect("validate")
            .ok
    );
}
