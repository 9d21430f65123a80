//! The canonical digest index: same statements → same digest, found both ways, durable, and
//! honest about databases created before it existed.

mod common;

use std::time::Duration;

use common::*;
use provchain_consensus::RdfFormat;
use provchain_storage::{Store, TxDigest};

fn raw_open(path: &std::path::Path) -> sled::Db {
    for _ in 0..50 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    sled::open(path).expect("raw open")
}

const TURTLE: &str = "@prefix ex: <http://example.org/> .\n\
    ex:batch9 ex:madeFrom [ ex:lot \"L7\" ] ; ex:site ex:plant2 .";
const NTRIPLES: &str = "_:q <http://example.org/lot> \"L7\" .\n\
    <http://example.org/batch9> <http://example.org/site> <http://example.org/plant2> .\n\
    <http://example.org/batch9> <http://example.org/madeFrom> _:q .\n";

fn sha(d: &TxDigest) -> [u8; 32] {
    match d {
        TxDigest::Sha256(d) => *d,
        TxDigest::Unavailable(why) => panic!("no digest: {why}"),
    }
}

#[test]
fn same_statements_are_found_by_digest_across_blocks_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let a = tx(&g, RdfFormat::Turtle, TURTLE, 1);
    let other = tx(
        &g,
        RdfFormat::Turtle,
        "<http://e/x> <http://e/y> \"z\" .",
        2,
    );
    let b = tx(&g, RdfFormat::NTriples, NTRIPLES, 3);
    let ring: String = (0..600)
        .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", (i + 1) % 600))
        .collect();
    let toxic = tx(&g, RdfFormat::NTriples, &ring, 4);
    {
        let store = Store::open(dir.path(), &g).expect("open");
        let b1 = block(&g, &g.block(), vec![a.clone(), other.clone()]);
        let b2 = block(&g, &b1, vec![b.clone(), toxic.clone()]);
        store.commit_final(&[b1]).expect("commit 1");
        store.commit_final(&[b2]).expect("commit 2");
        assert_eq!(store.digests_from(), 0);
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    let da = sha(&store
        .tx_digest(&a.id())
        .expect("test value")
        .expect("digest of a"));
    let db = sha(&store
        .tx_digest(&b.id())
        .expect("test value")
        .expect("digest of b"));
    let dother = sha(&store
        .tx_digest(&other.id())
        .expect("test value")
        .expect("digest"));
    assert_eq!(
        da, db,
        "same statements, other syntax and blank-node labels"
    );
    assert_ne!(da, dother);
    let found = store.transactions_by_digest(&da, 10).expect("lookup");
    let ids: Vec<_> = found.iter().map(|(id, loc)| (*id, loc.height)).collect();
    assert_eq!(
        ids,
        vec![(a.id(), 1), (b.id(), 2)],
        "oldest first, with locations"
    );
    assert_eq!(
        store
            .transactions_by_digest(&da, 1)
            .expect("test value")
            .len(),
        1
    );
    assert!(
        store
            .transactions_by_digest(&[7; 32], 10)
            .expect("test value")
            .is_empty()
    );
    match store.tx_digest(&toxic.id()).expect("test value") {
        Some(TxDigest::Unavailable(why)) => assert!(why.contains("too complex"), "{why}"),
        other => panic!("a 600-node look-alike ring must have no digest, got {other:?}"),
    }
    assert_eq!(
        store
            .tx_digest(&provchain_consensus::Hash([9; 32]))
            .expect("test value"),
        None
    );
}

#[test]
fn a_database_from_before_the_index_starts_it_at_its_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let a = tx(&g, RdfFormat::Turtle, TURTLE, 1);
    let b1 = block(&g, &g.block(), vec![a.clone()]);
    {
        let store = Store::open(dir.path(), &g).expect("open");
        store
            .commit_final(std::slice::from_ref(&b1))
            .expect("commit");
    }
    {
        // What a database written before the digest index looks like.
        let db = raw_open(dir.path());
        db.open_tree("meta")
            .expect("test value")
            .remove("digests_from")
            .expect("test value");
        db.drop_tree("digests").expect("test value");
        db.flush().expect("test value");
    }
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(store.digests_from(), 2);
    assert_eq!(store.tx_digest(&a.id()).expect("test value"), None);
    let b = tx(&g, RdfFormat::NTriples, NTRIPLES, 3);
    store
        .commit_final(&[block(&g, &b1, vec![b.clone()])])
        .expect("commit after reopen");
    let d = sha(&store
        .tx_digest(&b.id())
        .expect("test value")
        .expect("new transactions are indexed"));
    assert_eq!(
        store
            .transactions_by_digest(&d, 10)
            .expect("test value")
            .len(),
        1
    );
    drop(store);
    assert_eq!(
        Store::open(dir.path(), &g)
            .expect("test value")
            .digests_from(),
        2
    );
}

#[test]
fn the_index_by_digest_survives_segment_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    // Twelve blocks, each with one document of the same statements (blank-node labels and
    // syntax vary) among others: twelve segments, merged down to a few.
    let mut parent = g.block();
    let mut same = Vec::new();
    for h in 1..=12u64 {
        let doc = if h % 2 == 0 {
            TURTLE.to_owned()
        } else {
            NTRIPLES.replace("_:q", &format!("_:n{h}"))
        };
        let format = if h % 2 == 0 {
            RdfFormat::Turtle
        } else {
            RdfFormat::NTriples
        };
        let t = tx(&g, format, &doc, 100 + h);
        let noise = tx(
            &g,
            RdfFormat::Turtle,
            &format!("<http://e/s{h}> <http://e/p> \"{h}\" ."),
            200 + h,
        );
        let b = block(&g, &parent, vec![noise, t.clone()]);
        store
            .commit_final(std::slice::from_ref(&b))
            .expect("commit");
        same.push((t.id(), h));
        parent = b;
    }
    let before = store.storage_stats().segments;
    while store.merge_due() {
        store.merge_segments().expect("merge");
    }
    let after = store.storage_stats().segments;
    assert!(after < before, "merges ran: {before} -> {after} segments");
    let d = sha(&store
        .tx_digest(&same[0].0)
        .expect("test value")
        .expect("digest"));
    let found: Vec<_> = store
        .transactions_by_digest(&d, 100)
        .expect("lookup")
        .into_iter()
        .map(|(id, loc)| {
            assert_eq!(loc.index, 1);
            (id, loc.height)
        })
        .collect();
    assert_eq!(found, same, "all twelve, oldest first, after merging");
    assert_eq!(
        store.transactions_by_digest(&d, 5).expect("lookup"),
        store.transactions_by_digest(&d, 100).expect("lookup")[..5],
        "the limit keeps the oldest"
    );
    drop(store);
    let store = Store::open(dir.path(), &g).expect("reopen");
    assert_eq!(
        store.transactions_by_digest(&d, 100).expect("lookup").len(),
        12
    );
    for (id, _) in &same {
        assert_eq!(
            store.tx_digest(id).expect("test value").map(|d| sha(&d)),
            Some(d)
        );
    }
}
