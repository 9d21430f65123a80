//! Full verification of the stored chain and dataset ([`Store::validate_integrity`]).

use provchain_consensus::{Block, Decode, Hash, merkle_root};
use serde::Serialize;

use std::sync::Arc;

use crate::dataset::INDEX_NAMES;
use crate::error::StorageError;
use crate::segment::{
    QUAD_SECTIONS, QuadKey, Rec, SECTION_TERMS, SECTION_TXS, Segment, TermRec, TxRec,
};
use crate::store::{Store, TxLocation, Uncached, tx_quads};
use crate::term::iri;
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

const CHECKS: [&str; 9] = [
    "block_encoding",
    "chain_links",
    "block_seals",
    "tx_roots",
    "tx_signatures",
    "tx_index",
    "tx_triples",
    "quad_indexes",
    "term_dictionary",
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
        // One view throughout: blocks committed while this runs are not looked at.
        let live = i.live();
        let head = live.head.clone();
        let total = head.height + 1;
        let mut t = Tally {
            failures: [0; CHECKS.len()],
            first: Default::default(),
            first_error: None,
        };
        let mut checked_transactions = 0;
        let mut prev_hash = i.genesis_hash;
        let mut height = 0u64;
        let last = (head.height + 1).to_be_bytes();
        for kv in crate::store::reassembled(i.blocks.range(..last), 8) {
            let (k, v) = kv?;
            let key_height = crate::store::u64_value(&k).unwrap_or(u64::MAX);
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
            let gov_ok = match block.header.gov_root {
                Some(root) => {
                    !block.governance.is_empty()
                        && provchain_consensus::block::gov_root(&block.governance) == root
                }
                None => block.governance.is_empty(),
            };
            if !gov_ok {
                t.fail(
                    3,
                    height,
                    "gov_root does not match the governance items".into(),
                );
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
                if let Some(reason) = self.check_tx_quads(&live, id, &quads)? {
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
        // Index agreement: every segment's six index orders decode, are sorted and hold the
        // same number of quads; together they hold the stored count.
        match self.check_segments(&live) {
            Ok(total) if total == live.triples => {}
            Ok(total) => t.fail(
                7,
                head.height,
                format!(
                    "segments hold {total} quads in each of {}, the stored count is {}",
                    INDEX_NAMES.join(" "),
                    live.triples
                ),
            ),
            Err(reason) => t.fail(7, head.height, reason),
        }
        if let Err(reason) = self.check_terms(live.next_term_id) {
            t.fail(8, head.height, reason);
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
        live: &[Arc<Segment>],
        id: &Hash,
        quads: &[crate::rdf::OwnedQuad],
    ) -> Result<Option<String>, StorageError> {
        let i = &self.inner;
        let txg = i.term_id(live, &iri(vocab::tx_iri(id)))?;
        let default_count = quads.iter().filter(|q| q.1.is_none()).count() as u64;
        let stored = match txg {
            None => 0,
            Some(g) => {
                let mut n = 0u64;
                for q in i.scan(live, 3, [g, 0, 0, 0], [g, u64::MAX, u64::MAX, u64::MAX])? {
                    q?;
                    n += 1;
                }
                n
            }
        };
        if stored != default_count {
            return Ok(Some(format!(
                "transaction {id} graph holds {stored} statements, its document has {default_count}"
            )));
        }
        for ([s, p, o], g) in quads {
            let ids = [
                i.term_id(live, s)?,
                i.term_id(live, p)?,
                i.term_id(live, o)?,
                match g {
                    None => txg,
                    Some(g) => i.term_id(live, g)?,
                },
            ];
            let present = match ids {
                [Some(s), Some(p), Some(o), Some(g)] => i.contains_quad(live, &[s, p, o, g])?,
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

    /// The id → term chunks cover ids 1.. without gaps and every entry decodes.
    fn check_terms(&self, next: u64) -> Result<(), String> {
        let i = &self.inner;
        let mut expected = 1u64;
        for kv in i.terms.range(..next.to_be_bytes()) {
            let (k, chunk) = kv.map_err(|e| format!("term dictionary: {e}"))?;
            let first = crate::store::u64_value(&k);
            if first != Some(expected) {
                return Err(format!(
                    "term chunk starts at {first:?}, expected id {expected}"
                ));
            }
            let n = crate::dict::chunk_len(&chunk)
                .ok_or_else(|| format!("term chunk {expected} is malformed"))?;
            for e in 0..n {
                let enc = crate::dict::chunk_entry(&chunk, e)
                    .ok_or_else(|| format!("term {} is malformed", expected + e as u64))?;
                crate::term::decode_term(enc)
                    .map_err(|d| format!("term {}: {d}", expected + e as u64))?;
            }
            expected += n as u64;
        }
        if expected != next {
            return Err(format!(
                "term chunks end before id {expected}, the next id is {next}"
            ));
        }
        Ok(())
    }

    /// Decodes every page of every live segment; returns the quads per index order, or the
    /// first inconsistency.
    fn check_segments(&self, live: &[Arc<Segment>]) -> Result<u64, String> {
        let src = Uncached(&self.inner);
        let mut total = 0u64;
        for seg in live {
            for (k, name) in INDEX_NAMES.iter().enumerate().take(QUAD_SECTIONS) {
                let n = check_section::<QuadKey>(&src, seg, k as u8)?;
                if n != seg.quad_count() {
                    return Err(format!(
                        "segment {} index {} holds {n} quads, its header says {}",
                        seg.id,
                        name,
                        seg.quad_count()
                    ));
                }
            }
            check_section::<TermRec>(&src, seg, SECTION_TERMS)?;
            check_section::<TxRec>(&src, seg, SECTION_TXS)?;
            total += seg.quad_count();
        }
        Ok(total)
    }
}

/// Reads one section of a segment in full: pages decode, records ascend strictly and match
/// the directory. Returns the record count.
fn check_section<R: Rec>(src: &Uncached<'_>, seg: &Segment, section: u8) -> Result<u64, String> {
    use crate::segment::PageSource;
    let dir = R::dir(seg, section);
    let mut prev: Option<R> = None;
    let mut n = 0u64;
    for (page, first) in dir.firsts.iter().enumerate() {
        let recs = src
            .page::<R>(seg, section, page)
            .map_err(|e| format!("segment {} section {section}: {e}", seg.id))?;
        if recs.first() != Some(first) {
            return Err(format!(
                "segment {} section {section} page {page} does not start where its directory says",
                seg.id
            ));
        }
        for r in recs.iter() {
            if prev.is_some_and(|p| p >= *r) {
                return Err(format!(
                    "segment {} section {section} page {page} is out of order",
                    seg.id
                ));
            }
            prev = Some(*r);
            n += 1;
        }
    }
    if n != dir.total || prev != dir.last {
        return Err(format!(
            "segment {} section {section} holds {n} records, its header says {}",
            seg.id, dir.total
        ));
    }
    Ok(n)
}
