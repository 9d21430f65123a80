//! Canonical digests of transaction documents.
//!
//! A transaction's digest is the SHA-256 of its statements in RDF Dataset Canonicalization
//! (RDFC-1.0, W3C Recommendation) N-Quads form: blank nodes get canonical labels and statements
//! are sorted, so the same statements submitted twice, with other blank-node labels, another
//! statement order, another syntax or duplicates, have the same digest. Anyone can recompute
//! it with any RDFC-1.0 implementation and `sha256sum`. Statements in the document's default
//! graph stay in the default graph (they are not moved into the transaction's graph first), so
//! the digest depends on the document alone.
//!
//! **Bounded work.** RDFC-1.0 is exponential on some blank-node structures (cliques, long
//! symmetric cycles). The work is bounded by the algorithm's own deterministic safeguards (the
//! recursion depth and the number of permutations tried) and by a cap on the blank nodes that
//! share a first-degree hash; a document beyond them has no digest, on every node alike, which
//! is recorded as [`DigestError::TooComplex`]. No wall-clock limit takes part, so all nodes reach
//! the same outcome.

use std::collections::HashSet;

use sha2::{Digest as _, Sha256};
use sophia_api::term::SimpleTerm;
use sophia_c14n::C14nError;
use sophia_c14n::hash::Sha256 as C14nSha256;
use sophia_c14n::rdfc10;

use crate::rdf::OwnedQuad;

/// Recursion depth factor for the N-degree hash (RDFC-1.0 safeguard); the crate's default.
const DEPTH_FACTOR: f32 = rdfc10::DEFAULT_DEPTH_FACTOR;
/// Largest number of permutations tried per blank-node group; the crate's default.
const PERMUTATION_LIMIT: usize = rdfc10::DEFAULT_PERMUTATION_LIMIT;
/// Most blank nodes a document may have for its digest to be computed. Beyond this, the
/// N-degree hash of many look-alike blank nodes costs seconds; the document is still accepted.
pub const MAX_DIGEST_BLANK_NODES: usize = 4096;
/// Bound on the estimated N-degree hashing work ([`BlankNodeShape`]): about 0.1 s.
const MAX_DIGEST_WORK: u64 = 2_000_000;
/// Deepest recursion of the N-degree hash.
const MAX_RECURSION_DEPTH: usize = 128;

/// A 32-byte SHA-256 digest of a canonical document.
pub type CanonicalDigest = [u8; 32];

/// Why a document has no canonical digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("too complex to canonicalize within the node's bounds: {0}")]
    TooComplex(String),
    #[error("cannot canonicalize: {0}")]
    Unsupported(String),
}

/// The canonical digest of parsed statements (duplicates allowed; blank-node labels are
/// irrelevant).
pub fn canonical_digest(quads: &[OwnedQuad]) -> Result<CanonicalDigest, DigestError> {
    let mut hasher = HashWriter(Sha256::new());
    normalize(quads, &mut hasher)?;
    Ok(hasher.0.finalize().into())
}

/// The canonical N-Quads document itself, for display and for checking a digest by hand.
pub fn canonical_nquads(quads: &[OwnedQuad]) -> Result<String, DigestError> {
    let mut out = Vec::new();
    normalize(quads, &mut out)?;
    String::from_utf8(out).map_err(|e| DigestError::Unsupported(e.to_string()))
}

fn normalize(quads: &[OwnedQuad], w: impl std::io::Write) -> Result<(), DigestError> {
    let set: HashSet<&OwnedQuad> = quads.iter().collect();
    let shape = BlankNodeShape::of(&set);
    if shape.blank_nodes > MAX_DIGEST_BLANK_NODES {
        return Err(DigestError::TooComplex(format!(
            "{} blank nodes, at most {MAX_DIGEST_BLANK_NODES} are canonicalized",
            shape.blank_nodes
        )));
    }
    if shape.work > MAX_DIGEST_WORK {
        return Err(DigestError::TooComplex(format!(
            "{} look-alike blank nodes in groups of up to {} linked blank nodes",
            shape.ambiguous, shape.largest_group
        )));
    }
    // The crate bounds recursion depth by `depth_factor × blank nodes`; keep it shallow enough
    // for any thread's stack.
    let depth_factor =
        DEPTH_FACTOR.min(MAX_RECURSION_DEPTH as f32 / shape.blank_nodes.max(1) as f32);
    rdfc10::normalize_with::<C14nSha256, _, _>(&set, w, depth_factor, PERMUTATION_LIMIT).map_err(
        |e| match e {
            C14nError::ToxicGraph(m) => DigestError::TooComplex(m),
            C14nError::Unsupported(m) => DigestError::Unsupported(m),
            C14nError::Io(e) => DigestError::Unsupported(e.to_string()),
            C14nError::Dataset(e) => match e {},
        },
    )
}

/// What makes RDFC-1.0 expensive, measured before running it.
///
/// A blank node whose first-degree shape (its statements, with itself and other blank nodes
/// replaced by placeholders, as in the algorithm's first-degree hash) is unique gets its
/// canonical label at once. Only *ambiguous* ones, sharing a shape, go through the N-degree
/// hash, which walks the group of blank nodes linked to them and copies an issuer per step:
/// about `group size²` per ambiguous node.
struct BlankNodeShape {
    blank_nodes: usize,
    ambiguous: usize,
    largest_group: usize,
    work: u64,
}

impl BlankNodeShape {
    fn of(set: &HashSet<&OwnedQuad>) -> Self {
        use std::collections::HashMap;
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut quads_of: Vec<Vec<&OwnedQuad>> = Vec::new();
        let mut parent: Vec<usize> = Vec::new();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for &q in set {
            let mut here: Vec<usize> = Vec::new();
            for t in [Some(&q.0[0]), Some(&q.0[2]), q.1.as_ref()]
                .into_iter()
                .flatten()
            {
                if let SimpleTerm::BlankNode(b) = t {
                    let next = index.len();
                    let id = *index.entry(b.as_str()).or_insert(next);
                    if id == next {
                        quads_of.push(Vec::new());
                        parent.push(id);
                    }
                    if !here.contains(&id) {
                        here.push(id);
                        quads_of[id].push(q);
                    }
                }
            }
            for w in here.windows(2) {
                let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
                parent[a] = b;
            }
        }
        let n = index.len();
        let mut label_of = vec![""; n];
        for (label, &id) in &index {
            label_of[id] = label;
        }
        // First-degree shapes.
        let mut shapes: HashMap<Vec<String>, usize> = HashMap::new();
        let mut shape_of = Vec::with_capacity(n);
        for (id, quads) in quads_of.iter().enumerate() {
            let me = label_of[id];
            let mut lines: Vec<String> = quads
                .iter()
                .map(|q| {
                    let mut line = String::new();
                    for t in q.0.iter().chain(q.1.as_ref()) {
                        match t {
                            SimpleTerm::BlankNode(b) if b.as_str() == me => line.push_str("_:a "),
                            SimpleTerm::BlankNode(_) => line.push_str("_:z "),
                            t => line.push_str(&format!("{t:?} ")),
                        }
                    }
                    line
                })
                .collect();
            lines.sort_unstable();
            let next = shapes.len();
            shape_of.push(*shapes.entry(lines).or_insert(next));
        }
        let mut shape_count = vec![0usize; shapes.len()];
        for &s in &shape_of {
            shape_count[s] += 1;
        }
        let mut group_size = vec![0usize; n];
        for id in 0..n {
            let root = find(&mut parent, id);
            group_size[root] += 1;
        }
        // Permutations: the N-degree hash of a node tries every order of each set of its
        // neighbours that look alike (same position, predicate and shape): Π g! orders,
        // compounding with every level of recursion.
        let mut orders = vec![1u64; n];
        for (id, quads) in quads_of.iter().enumerate() {
            let me = label_of[id];
            let mut groups: HashMap<(usize, String, usize), HashSet<usize>> = HashMap::new();
            for q in quads {
                let pred = format!("{:?}{:?}", q.0[1], q.1);
                for (pos, t) in [(0, &q.0[0]), (2, &q.0[2])] {
                    if let SimpleTerm::BlankNode(b) = t
                        && b.as_str() != me
                    {
                        let other = index[b.as_str()];
                        groups
                            .entry((pos, pred.clone(), shape_of[other]))
                            .or_default()
                            .insert(other);
                    }
                }
            }
            for g in groups.values() {
                let f: u64 = (1..=g.len() as u64).product();
                orders[id] = orders[id].saturating_mul(f);
            }
        }
        let mut group_orders = vec![1u64; n];
        for (id, &o) in orders.iter().enumerate() {
            let root = find(&mut parent, id);
            group_orders[root] = group_orders[root].max(o);
        }
        let (mut ambiguous, mut largest_group, mut work) = (0, 0, 0u64);
        for id in 0..n {
            if shape_count[shape_of[id]] > 1 {
                let root = find(&mut parent, id);
                let size = group_size[root] as u64;
                ambiguous += 1;
                largest_group = largest_group.max(size as usize);
                // Orders compound per recursion level; a group's depth is its size at most.
                let perms = group_orders[root].saturating_pow(size.min(64) as u32);
                work = work.saturating_add(size.pow(2).saturating_mul(perms));
            }
        }
        Self {
            blank_nodes: n,
            ambiguous,
            largest_group,
            work,
        }
    }
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use provchain_consensus::RdfFormat;

    use super::*;
    use crate::rdf::parse;

    fn digest(format: RdfFormat, doc: &str, scope: &str) -> Result<String, DigestError> {
        let quads = parse(format, doc, scope).expect("parses");
        canonical_digest(&quads).map(hex::encode)
    }

    #[test]
    fn same_statements_in_other_order_labels_and_syntax_have_one_digest() {
        let a = "@prefix ex: <http://example.org/> .\n\
                 ex:batch1 ex:madeFrom [ ex:lot \"L7\" ; ex:weight 12 ] .\n\
                 ex:batch1 ex:site ex:plant2 .";
        let b = "<http://example.org/batch1> <http://example.org/site> <http://example.org/plant2> .\n\
                 _:zz <http://example.org/weight> \"12\"^^<http://www.w3.org/2001/XMLSchema#integer> .\n\
                 _:zz <http://example.org/lot> \"L7\" .\n\
                 <http://example.org/batch1> <http://example.org/madeFrom> _:zz .\n\
                 <http://example.org/batch1> <http://example.org/site> <http://example.org/plant2> .";
        let da = digest(RdfFormat::Turtle, a, "t1").expect("test value");
        assert_eq!(
            da,
            digest(RdfFormat::NTriples, b, "t2").expect("test value")
        );
        assert_eq!(
            da,
            digest(RdfFormat::Turtle, a, "other-scope").expect("test value")
        );
        let changed = a.replace("\"L7\"", "\"L8\"");
        assert_ne!(
            da,
            digest(RdfFormat::Turtle, &changed, "t1").expect("test value")
        );
    }

    #[test]
    fn digest_is_sha256_of_the_rdfc10_document() {
        let doc = "_:a <http://example.org/p> \"x\" .\n";
        let quads = parse(RdfFormat::NTriples, doc, "s").expect("test value");
        let canonical = canonical_nquads(&quads).expect("test value");
        // The W3C test suite labels the first canonical blank node c14n0.
        assert_eq!(canonical, "_:c14n0 <http://example.org/p> \"x\" .\n");
        let expected: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        assert_eq!(canonical_digest(&quads).expect("test value"), expected);
    }

    #[test]
    fn named_graphs_are_part_of_the_digest() {
        let in_default = "<http://e/s> <http://e/p> <http://e/o> .\n";
        let in_named = "<http://e/s> <http://e/p> <http://e/o> <http://e/g> .\n";
        assert_ne!(
            digest(RdfFormat::NQuads, in_default, "a").expect("test value"),
            digest(RdfFormat::NQuads, in_named, "a").expect("test value")
        );
    }

    #[test]
    fn a_blank_node_clique_is_refused_quickly_and_deterministically() {
        // Every blank node linked to every other: the N-degree hash explodes without bounds.
        let n = 12;
        let mut doc = String::new();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    doc.push_str(&format!("_:b{i} <http://e/knows> _:b{j} .\n"));
                }
            }
        }
        let first = digest(RdfFormat::NTriples, &doc, "x");
        assert!(
            matches!(first, Err(DigestError::TooComplex(_))),
            "got {first:?}"
        );
        assert_eq!(first, digest(RdfFormat::NTriples, &doc, "y"));
    }

    #[test]
    fn long_look_alike_chains_and_dense_groups_are_refused_not_recursed() {
        // Without the bounds, a 4,096-node ring overflows the stack and a 500-node chain or a
        // complete bipartite K3,3 takes seconds.
        let ring: String = (0..4096)
            .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", (i + 1) % 4096))
            .collect();
        let chain: String = (0..500)
            .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", i + 1))
            .collect();
        let k33: String = (0..3)
            .flat_map(|i| (0..3).map(move |j| format!("_:l{i} <http://e/k> _:r{j} .\n")))
            .collect();
        for doc in [ring, chain, k33] {
            let r = digest(RdfFormat::NTriples, &doc, "x");
            assert!(matches!(r, Err(DigestError::TooComplex(_))), "got {r:?}");
        }
        // Small look-alike structures, the usual shape of provenance data, are canonicalized.
        let boxes: String = (0..300)
            .map(|c| {
                format!(
                    "<http://e/ship> <http://e/item> _:b{c} .\n_:b{c} <http://e/n> \"{}\" .\n",
                    c % 3
                )
            })
            .collect();
        let ring: String = (0..40)
            .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", (i + 1) % 40))
            .collect();
        // About the largest look-alike chain within the bounds: recursion stays within a
        // default 2 MiB thread stack, also in debug builds.
        let chain: String = (0..120)
            .map(|i| format!("_:b{i} <http://e/next> _:b{} .\n", i + 1))
            .collect();
        for doc in [boxes, ring, chain] {
            digest(RdfFormat::NTriples, &doc, "x").expect("canonicalized");
        }
    }

    #[test]
    fn too_many_blank_nodes_are_refused_before_canonicalizing() {
        let mut doc = String::new();
        for i in 0..=MAX_DIGEST_BLANK_NODES {
            doc.push_str(&format!("_:b{i} <http://e/p> \"v\" .\n"));
        }
        assert!(matches!(
            digest(RdfFormat::NTriples, &doc, "x"),
            Err(DigestError::TooComplex(_))
        ));
    }
}
