//! Full verification of the stored chain and dataset ([`Store::validate_integrity`]).

use provchain_consensus::{Block, Decode, Hash, merkle_root};
use serde::Serialize;

use crate::dataset::{INDEX_NAMES, quad_key};
use crate::error::StorageError;
use crate::store::{Store, TxLocation, tx_quads};
use crate::term::{dictionary_key, encode_term, iri};
use crate::vocab;

/// The first problem found, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityError {
    pub height: u64,
    pub reason: String,
}

/// One family of checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityCheck {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// Outcome of [`Store::validate_integrity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityReport {
    pub ok: bool,
    pub checked_blocks: u64,
    pub checked_transactions: u64,
    pub first_error: Option<IntegrityError>,
    pub checks: Vec<IntegrityCheck>,
}

const CHECKS: [&str; 8] = [
    "block_encoding",
    "chain_links",
    "block_seals",
    "tx_roots",
    "tx_signatures",
    "tx_index",
    "tx_triples",
    "quad_indexes",
];

struct Tally {
    failures: [u64; CHECKS.len()],
    first: [Option<String>; CHECKS.len()],
    first_error: Option<IntegrityError>,
}

impl Tally {
    fn fail(&mut self, check: usize, height: u64, reason: String) {
        self.failures[check] += 1;
        if self.first[check].is_none() {
            self.first[check] = Some(format!("height {height}: {reason}"));
        }
        if self.first_error.is_none() {
            self.first_error = Some(IntegrityError { height, reason });
        }
    }
}

impl Store {
    /// Walks the whole final chain and the dataset: block decoding, heights and hash links,
    /// seals, `tx_root`s, transaction signatures, the transaction index, every transaction's
    /// statements present in the dataset with the recorded count, and the six quad indexes
    /// agreeing with each other and with the counter. `progress(done, total)` is called per
    /// block. Long-running by design (it re-parses every document); run it off the runtime.
    pub fn validate_integrity(
        &self,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<IntegrityReport, StorageError> {
        let i = &self.inner;
        let head = self.final_head()?;
        let total = head.height + 1;
        let mut t = Tally {
            failures: [0; CHECKS.len()],
            first: Default::default(),
            first_error: None,
        };
        let mut checked_transactions = 0;
        let mut prev_hash = i.genesis_hash;
        let mut height = 0u64;
        for kv in i.blocks.iter() {
            let (k, v) = kv?;
            let key_height = crate::dataset::u64_value(&k).unwrap_or(u64::MAX);
            if key_height != height {
                t.fail(
                    1,
                    height,
                    format!("block key {key_height} where height {height} was expected"),
                );
            }
            let block = match Block::decode(&v) {
                Ok(b) => b,
                Err(e) => {
                    t.fail(0, height, format!("block does not decode: {e}"));
                    // The next block's parent cannot be checked against an unknown hash.
                    prev_hash = Hash::default();
                    height += 1;
                    progress(height, total);
                    continue;
                }
            };
            let hash = block.hash();
            if block.header.height != height {
                t.fail(
                    1,
                    height,
                    format!("block claims height {}", block.header.height),
                );
            }
            if block.header.parent_hash != prev_hash && prev_hash != Hash::default() {
                t.fail(
                    1,
                    height,
                    format!(
                        "parent hash {} does not match the previous block {prev_hash}",
                        block.header.parent_hash
                    ),
                );
            }
            if self.height_of(&hash)? != Some(height) {
                t.fail(
                    1,
                    height,
                    format!("block index has no entry {hash} -> {height}"),
                );
            }
            if height > 0 && !block.verify_seal(&i.genesis_hash) {
                t.fail(2, height, "proposer signature does not verify".into());
            }
            if height == 0 && block != i.genesis.block() {
                t.fail(
                    2,
                    height,
                    "height 0 is not this network's genesis block".into(),
                );
            }
            let ids = block.tx_ids();
            if merkle_root(&ids) != block.header.tx_root {
                t.fail(3, height, "tx_root does not match the transactions".into());
            }
            for (index, (tx, id)) in block.transactions.iter().zip(&ids).enumerate() {
                checked_transactions += 1;
                let msg = tx.signing_message(&i.genesis_hash);
                if !tx.body.submitter.verify(&msg.0, &tx.signature) {
                    t.fail(
                        4,
                        height,
                        format!("transaction {id} signature does not verify"),
                    );
                }
                let loc = self.tx_location(id);
                let quads = match tx_quads(tx, id) {
                    Ok(q) => q,
                    Err(e) => {
                        t.fail(
                            6,
                            height,
                            format!("transaction {id} RDF does not parse: {e}"),
                        );
                        continue;
                    }
                };
                let expected = TxLocation {
                    height,
                    index: index as u32,
                    triples: quads.len() as u64,
                };
                match loc {
                    Ok(Some(l)) if l == expected => {}
                    Ok(Some(l)) => t.fail(
                        5,
                        height,
                        format!("transaction {id} indexed as {l:?}, expected {expected:?}"),
                    ),
                    Ok(None) => t.fail(5, height, format!("transaction {id} is not indexed")),
                    Err(e) => t.fail(5, height, format!("transaction {id}: {e}")),
                }
                if let Some(reason) = self.check_tx_quads(id, &quads)? {
                    t.fail(6, height, reason);
                }
            }
            prev_hash = hash;
            height += 1;
            progress(height, total);
        }
        if height != total {
            t.fail(
                1,
                height,
                format!(
                    "chain has {height} blocks but the final head is at {}",
                    head.height
                ),
            );
        }
        // Index agreement: each index holds the same number of quads, equal to the counter.
        let mut counts = Vec::with_capacity(6);
        for tree in &i.idx {
            counts.push(tree.len() as u64);
        }
        if counts.iter().any(|&c| c != self.triple_count()) {
            t.fail(
                7,
                head.height,
                format!(
                    "quad index sizes {:?} ({}) differ from the stored count {}",
                    counts,
                    INDEX_NAMES.join(" "),
                    self.triple_count()
                ),
            );
        }
        let checks = CHECKS
            .iter()
            .enumerate()
            .map(|(k, name)| IntegrityCheck {
                name,
                passed: t.failures[k] == 0,
                detail: match &t.first[k] {
                    None => "ok".into(),
                    Some(f) => format!("{} failure(s), first at {f}", t.failures[k]),
                },
            })
            .collect();
        Ok(IntegrityReport {
            ok: t.first_error.is_none(),
            checked_blocks: height,
            checked_transactions,
            first_error: t.first_error,
            checks,
        })
    }

    /// Every statement of the document is stored, and the transaction graph holds exactly
    /// its default-graph statements.
    fn check_tx_quads(
        &self,
        id: &Hash,
        quads: &[crate::rdf::OwnedQuad],
    ) -> Result<Option<String>, StorageError> {
        let dict = &self.inner.dict;
        let txg_term = iri(vocab::tx_iri(id));
        let txg = lookup(dict, &txg_term)?;
        let default_count = quads.iter().filter(|q| q.1.is_none()).count() as u64;
        let stored = match txg {
            None => 0,
            Some(g) => self.inner.idx[3].scan_prefix(g.to_be_bytes()).count() as u64,
        };
        if stored != default_count {
            return Ok(Some(format!(
                "transaction {id} graph holds {stored} statements, its document has {default_count}"
            )));
        }
        for ([s, p, o], g) in quads {
            let ids = [
                lookup(dict, s)?,
                lookup(dict, p)?,
                lookup(dict, o)?,
                match g {
                    None => txg,
                    Some(g) => lookup(dict, g)?,
                },
            ];
            let present = match ids {
                [Some(s), Some(p), Some(o), Some(g)] => {
                    self.inner.idx[0].contains_key(quad_key(0, &[s, p, o, g]))?
                }
                _ => false,
            };
            if !present {
                return Ok(Some(format!(
                    "transaction {id}: a statement is missing from the dataset"
                )));
            }
        }
        Ok(None)
    }
}

fn lookup(
    dict: &crate::dataset::Dict,
    t: &crate::term::OwnedTerm,
) -> Result<Option<u64>, StorageError> {
    match encode_term(t) {
        None => Ok(None),
        Some(enc) => Ok(dict.lookup_key(&dictionary_key(&enc))?),
    }
}
