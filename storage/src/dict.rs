//! The term dictionary: term ↔ id, with bounded in-memory caches.
//!
//! * **id → term** lives in the `terms` tree as *chunks*: every commit that introduces new
//!   terms writes one value under the first new id (`u64` BE) holding all of them
//!   (`u32 n`, `n` end offsets, then the encodings, see [`crate::term`]). Ids are assigned
//!   consecutively by the single writer, so the chunk holding id `x` is the last key ≤ `x`
//!   (one `get_lt`).
//! * **term → id** is the term section of the segments ([`crate::segment`]), keyed by a
//!   128-bit blake3 hash of the term's encoding, behind a Bloom filter per segment.
//!   (A 128-bit hash collision is as likely as guessing a random key.)
//!
//! Both directions go through caches that only ever hold committed mappings, so a failed
//! commit cannot leave a stale id behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::DatasetError;
use crate::segment::{DigestRec, QuadKey, TermRec, TxDigestRec, TxRec};
use crate::term::StoreTerm;

/// Entries in each term cache. When full a cache is cleared: crude, but bounded and cheap;
/// hot terms refill it at once.
pub(crate) const TERM_CACHE_ENTRIES: usize = 100_000;

/// The dictionary key of an encoded term.
pub(crate) fn term_hash(encoded: &[u8]) -> u128 {
    let h = blake3::hash(encoded);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_be_bytes(b)
}

/// Encodes the terms with consecutive ids starting at a chunk's key.
pub(crate) fn encode_chunk(terms: &[Vec<u8>]) -> Vec<u8> {
    let data: usize = terms.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(4 + 4 * terms.len() + data);
    out.extend_from_slice(&(terms.len() as u32).to_be_bytes());
    let mut end = 0u32;
    for t in terms {
        end += t.len() as u32;
        out.extend_from_slice(&end.to_be_bytes());
    }
    for t in terms {
        out.extend_from_slice(t);
    }
    out
}

/// The `i`-th encoding in a chunk; `None` if the chunk is malformed or shorter.
pub(crate) fn chunk_entry(chunk: &[u8], i: usize) -> Option<&[u8]> {
    let u32_at = |pos: usize| -> Option<usize> {
        let b: [u8; 4] = chunk.get(pos..pos + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b) as usize)
    };
    let n = u32_at(0)?;
    if i >= n {
        return None;
    }
    let data = 4 + 4 * n;
    let start = if i == 0 { 0 } else { u32_at(4 + 4 * (i - 1))? };
    let end = u32_at(4 + 4 * i)?;
    chunk.get(data + start..data + end)
}

/// Entries of a chunk (for integrity checks).
pub(crate) fn chunk_len(chunk: &[u8]) -> Option<usize> {
    let b: [u8; 4] = chunk.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b) as usize)
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>, k: K, v: V) {
    if m.len() >= TERM_CACHE_ENTRIES {
        m.clear();
    }
    m.insert(k, v);
}

/// The two term caches.
#[derive(Default)]
pub(crate) struct TermCaches {
    ids: Mutex<HashMap<u128, u64>>,
    terms: Mutex<HashMap<u64, StoreTerm>>,
}

impl TermCaches {
    pub(crate) fn id(&self, hash: u128) -> Option<u64> {
        self.ids.lock().ok()?.get(&hash).copied()
    }
    pub(crate) fn remember_id(&self, hash: u128, id: u64) {
        if let Ok(mut c) = self.ids.lock() {
            bounded_insert(&mut c, hash, id);
        }
    }
    pub(crate) fn term(&self, id: u64) -> Option<StoreTerm> {
        self.terms.lock().ok()?.get(&id).cloned()
    }
    pub(crate) fn remember_term(&self, id: u64, t: StoreTerm) {
        if let Ok(mut c) = self.terms.lock() {
            bounded_insert(&mut c, id, t);
        }
    }
}

/// A decoded page of any section.
#[derive(Clone)]
pub(crate) enum AnyPage {
    Quads(Arc<Vec<QuadKey>>),
    Terms(Arc<Vec<TermRec>>),
    Txs(Arc<Vec<TxRec>>),
    Digests(Arc<Vec<DigestRec>>),
    TxDigests(Arc<Vec<TxDigestRec>>),
}

impl AnyPage {
    fn bytes(&self) -> usize {
        64 + match self {
            Self::Quads(v) => v.len() * 32,
            Self::Terms(v) => v.len() * 32,
            Self::Txs(v) => v.len() * 64,
            Self::Digests(v) => v.len() * 80,
            Self::TxDigests(v) => v.len() * 64,
        }
    }
}

/// `(segment, section, page)`.
pub(crate) type PageId = (u64, u8, u32);

/// Decoded segment pages, bounded by a byte budget. Two generations: new pages go to the
/// young one; when it holds half the budget the old one is dropped and the young one ages.
/// A hit in the old generation moves the page back to the young one. That approximates LRU
/// without bookkeeping per hit.
pub(crate) struct PageCache {
    half_budget: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    young: HashMap<PageId, AnyPage>,
    old: HashMap<PageId, AnyPage>,
    young_bytes: usize,
}

impl PageCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            half_budget: budget / 2,
            state: Mutex::new(CacheState::default()),
        }
    }

    pub(crate) fn get(&self, id: &PageId) -> Option<AnyPage> {
        let mut s = self.state.lock().ok()?;
        if let Some(p) = s.young.get(id) {
            return Some(p.clone());
        }
        let p = s.old.remove(id)?;
        Self::insert_young(&mut s, self.half_budget, *id, p.clone());
        Some(p)
    }

    pub(crate) fn insert(&self, id: PageId, page: AnyPage) {
        if let Ok(mut s) = self.state.lock() {
            Self::insert_young(&mut s, self.half_budget, id, page);
        }
    }

    fn insert_young(s: &mut CacheState, half: usize, id: PageId, page: AnyPage) {
        let bytes = page.bytes();
        if bytes > half {
            return;
        }
        if s.young_bytes + bytes > half {
            s.old = std::mem::take(&mut s.young);
            s.young_bytes = 0;
        }
        s.young_bytes += bytes;
        s.young.insert(id, page);
    }
}

pub(crate) fn corrupt_dict(detail: String) -> DatasetError {
    DatasetError::Corrupt {
        what: "term dictionary",
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip() {
        let terms = vec![b"\x01a".to_vec(), Vec::new(), b"\x04hello".to_vec()];
        let c = encode_chunk(&terms);
        assert_eq!(chunk_len(&c), Some(3));
        for (i, t) in terms.iter().enumerate() {
            assert_eq!(chunk_entry(&c, i), Some(t.as_slice()));
        }
        assert_eq!(chunk_entry(&c, 3), None);
        for cut in 0..c.len() {
            let _ = chunk_entry(&c[..cut], 2);
        }
    }
}
