//! `quads_matching` over the sled indexes agrees with sophia_inmem for every pattern.

mod common;

use std::collections::BTreeSet;

use common::*;
use provchain_consensus::RdfFormat;
use provchain_storage::Store;
use provchain_storage::term::write_nt;
use sophia_api::dataset::{Dataset, MutableDataset};
use sophia_api::quad::Quad;
use sophia_api::term::matcher::{Any, GraphNameMatcher, TermMatcher};
use sophia_api::term::{SimpleTerm, Term};
use sophia_inmem::dataset::FastDataset;

fn render<Q: Quad>(q: Q) -> String {
    let mut s = String::new();
    let (spo, g) = q.spog();
    for t in spo {
        write_nt(&t, &mut s);
        s.push(' ');
    }
    if let Some(g) = g {
        write_nt(&g, &mut s);
    }
    s
}

fn set<D: Dataset, S, P, O, G>(d: &D, s: S, p: P, o: O, g: G) -> BTreeSet<String>
where
    S: TermMatcher,
    P: TermMatcher,
    O: TermMatcher,
    G: GraphNameMatcher,
{
    d.quads_matching(s, p, o, g)
        .map(|q| render(q.expect("quad")))
        .collect()
}

#[test]
fn every_pattern_matches_like_an_in_memory_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let store = Store::open(dir.path(), &g).expect("open");
    let t1 = tx(
        &g,
        RdfFormat::Turtle,
        "@prefix ex: <http://ex.org/> .\nex:a ex:p ex:b , ex:c , \"lit\" , \"lit\"@en ; ex:q ex:a .\nex:b ex:p ex:a .\n_:x ex:p ex:a .",
        1,
    );
    let t2 = tx(
        &g,
        RdfFormat::NQuads,
        "<http://ex.org/a> <http://ex.org/p> <http://ex.org/b> <http://ex.org/g1> .\n<http://ex.org/a> <http://ex.org/p> <http://ex.org/b> .\n<http://ex.org/b> <http://ex.org/q> \"42\"^^<http://www.w3.org/2001/XMLSchema#integer> <http://ex.org/g1> .\n",
        2,
    );
    let b1 = block(&g, &g.block(), vec![t1, t2]);
    store.commit_final(&[b1]).expect("commit");

    let ds = store.dataset();
    let mut mem = FastDataset::new();
    let all: Vec<_> = ds.quads().map(|q| q.expect("quad")).collect();
    assert_eq!(all.len() as u64, store.triple_count());
    for q in &all {
        let ([s, p, o], gn) = q.clone();
        mem.insert(s, p, o, gn).expect("insert");
    }
    assert_eq!(mem.quads().count(), all.len(), "store returned duplicates");

    // Sample quads to take constants from: data in tx graphs, the named graph, metadata.
    let samples: Vec<_> = all.iter().step_by(3).cloned().collect();
    let mut checked = 0;
    for q in &samples {
        let ([s, p, o], gn) = q.clone();
        let s: SimpleTerm<'static> = s.as_simple().into_term();
        let p: SimpleTerm<'static> = p.as_simple().into_term();
        let o: SimpleTerm<'static> = o.as_simple().into_term();
        let gn: Option<SimpleTerm<'static>> = gn.map(|g| g.as_simple().into_term());
        for mask in 0u8..16 {
            let sm = (mask & 1 != 0).then(|| s.clone());
            let pm = (mask & 2 != 0).then(|| p.clone());
            let om = (mask & 4 != 0).then(|| o.clone());
            macro_rules! cmp {
                ($s:expr, $p:expr, $o:expr, $g:expr) => {{
                    let a = set(&ds, $s, $p, $o, $g);
                    let b = set(&mem, $s, $p, $o, $g);
                    assert_eq!(a, b, "mask {mask} on {q:?}");
                    assert!(!a.is_empty() || mask & 8 != 0);
                    checked += 1;
                }};
            }
            let g8 = mask & 8 != 0;
            match (sm.as_ref(), pm.as_ref(), om.as_ref(), g8) {
                (s, p, o, true) => {
                    let gm = Some(gn.clone());
                    match (s, p, o) {
                        (Some(s), Some(p), Some(o)) => cmp!([s], [p], [o], gm.clone()),
                        (Some(s), Some(p), None) => cmp!([s], [p], Any, gm.clone()),
                        (Some(s), None, Some(o)) => cmp!([s], Any, [o], gm.clone()),
                        (None, Some(p), Some(o)) => cmp!(Any, [p], [o], gm.clone()),
                        (Some(s), None, None) => cmp!([s], Any, Any, gm.clone()),
                        (None, Some(p), None) => cmp!(Any, [p], Any, gm.clone()),
                        (None, None, Some(o)) => cmp!(Any, Any, [o], gm.clone()),
                        (None, None, None) => cmp!(Any, Any, Any, gm.clone()),
                    }
                }
                (s, p, o, false) => match (s, p, o) {
                    (Some(s), Some(p), Some(o)) => cmp!([s], [p], [o], Any),
                    (Some(s), Some(p), None) => cmp!([s], [p], Any, Any),
                    (Some(s), None, Some(o)) => cmp!([s], Any, [o], Any),
                    (None, Some(p), Some(o)) => cmp!(Any, [p], [o], Any),
                    (Some(s), None, None) => cmp!([s], Any, Any, Any),
                    (None, Some(p), None) => cmp!(Any, [p], Any, Any),
                    (None, None, Some(o)) => cmp!(Any, Any, [o], Any),
                    (None, None, None) => cmp!(Any, Any, Any, Any),
                },
            }
        }
    }
    assert!(checked >= 16 * 5);

    // Non-constant matchers are filters; unknown constants and the default graph are empty.
    let a = sophia_api::term::IriRef::new_unchecked("http://ex.org/a");
    let b = sophia_api::term::IriRef::new_unchecked("http://ex.org/b");
    assert_eq!(
        set(&ds, [a, b], Any, Any, Any),
        set(&mem, [a, b], Any, Any, Any)
    );
    let nope = sophia_api::term::IriRef::new_unchecked("http://ex.org/none");
    assert!(set(&ds, [nope], Any, Any, Any).is_empty());
    assert!(set(&ds, Any, Any, Any, [None::<SimpleTerm>]).is_empty());
    let graphs: BTreeSet<String> = ds
        .graph_names()
        .map(|g| {
            let mut s = String::new();
            write_nt(&g.expect("graph"), &mut s);
            s
        })
        .collect();
    let mem_graphs: BTreeSet<String> = mem
        .graph_names()
        .map(|g| {
            let mut s = String::new();
            write_nt(&g.expect("graph"), &mut s);
            s
        })
        .collect();
    assert_eq!(graphs, mem_graphs);
    assert_eq!(graphs.len(), 4); // two tx graphs, g1, chain

    // The union view: default graph = all triples once, named graphs unchanged.
    let union = ds.union();
    let default: Vec<_> = union
        .quads_matching(Any, Any, Any, [None::<SimpleTerm>])
        .map(|q| q.expect("quad"))
        .collect();
    let distinct: BTreeSet<String> = all
        .iter()
        .map(|q| {
            let mut s = String::new();
            for t in &q.0 {
                write_nt(t, &mut s);
                s.push(' ');
            }
            s
        })
        .collect();
    assert_eq!(default.len(), distinct.len());
    assert!(
        distinct.len() < all.len(),
        "ex:a ex:p ex:b is in two graphs"
    );
    let ab = set(&union, [a], Any, [b], [None::<SimpleTerm>]);
    assert_eq!(ab.len(), 1, "{ab:?}");
    let g1 = sophia_api::term::IriRef::new_unchecked("http://ex.org/g1");
    assert_eq!(
        set(&union, Any, Any, Any, [Some(g1)]),
        set(&mem, Any, Any, Any, [Some(g1)])
    );
}
