//! The transaction Merkle tree: `tx_root` commits to the ordered transaction ids, and one
//! transaction's inclusion is proven with a path of `⌈log2 n⌉` sibling hashes.
//!
//! Leaves and inner nodes are hashed in different domains, and an odd node at the end of a level
//! is promoted unchanged to the next level (no duplication, so no CVE-2012-2459 style ambiguity).

use serde::{Deserialize, Serialize};

use crate::crypto::{Hash, domain};

fn leaf(id: &Hash) -> Hash {
    domain::MERKLE_LEAF.hash(&[&id.0])
}

fn node(l: &Hash, r: &Hash) -> Hash {
    domain::MERKLE_NODE.hash(&[&l.0, &r.0])
}

/// Root of the tree over `ids` (in block order).
pub fn merkle_root(ids: &[Hash]) -> Hash {
    if ids.is_empty() {
        return domain::MERKLE_EMPTY.hash(&[]);
    }
    let mut level: Vec<Hash> = ids.iter().map(leaf).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    node(&c[0], &c[1])
                } else {
                    c[0]
                }
            })
            .collect();
    }
    level[0]
}

/// One step of an inclusion path: the sibling and which side it sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    pub sibling: Hash,
    /// True when the sibling is the left operand.
    pub left: bool,
}

/// Inclusion path for the leaf at `index`, or `None` if out of range.
pub fn merkle_proof(ids: &[Hash], index: usize) -> Option<Vec<ProofStep>> {
    if index >= ids.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level: Vec<Hash> = ids.iter().map(leaf).collect();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            path.push(ProofStep {
                sibling: level[sibling],
                left: sibling < i,
            });
        }
        level = level
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    node(&c[0], &c[1])
                } else {
                    c[0]
                }
            })
            .collect();
        i /= 2;
    }
    Some(path)
}

/// Checks that `id` is included under `root` by `path`.
pub fn verify_merkle_proof(id: &Hash, path: &[ProofStep], root: &Hash) -> bool {
    let mut acc = leaf(id);
    for step in path {
        acc = if step.left {
            node(&step.sibling, &acc)
        } else {
            node(&acc, &step.sibling)
        };
    }
    acc == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hash_with;

    fn ids(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| hash_with("test", &[&(i as u64).to_le_bytes()]))
            .collect()
    }

    #[test]
    fn every_leaf_proves_and_tampering_fails() {
        for n in 1..=17 {
            let ids = ids(n);
            let root = merkle_root(&ids);
            for (i, id) in ids.iter().enumerate() {
                let path = merkle_proof(&ids, i).expect("in range");
                assert!(verify_merkle_proof(id, &path, &root), "n={n} i={i}");
                let other = hash_with("other", &[]);
                assert!(!verify_merkle_proof(&other, &path, &root));
                if let Some(first) = path.first() {
                    let mut bad = path.clone();
                    bad[0] = ProofStep {
                        left: !first.left,
                        ..*first
                    };
                    assert!(!verify_merkle_proof(id, &bad, &root) || n == 1);
                }
            }
            assert!(merkle_proof(&ids, n).is_none());
        }
    }

    #[test]
    fn root_depends_on_order_and_count() {
        let a = ids(4);
        let mut b = a.clone();
        b.swap(1, 2);
        assert_ne!(merkle_root(&a), merkle_root(&b));
        assert_ne!(merkle_root(&a[..3]), merkle_root(&a));
        assert_ne!(merkle_root(&[]), merkle_root(&a[..1]));
    }
}
