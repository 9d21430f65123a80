//! Immutable sorted segments: how the quad indexes, the term → id map and the transaction index
//! are laid out in sled.
//!
//! # Why segments
//!
//! sled spends roughly 10 µs of CPU per written key whatever its size, but writes large values
//! at hundreds of MB/s. A block of 100 transactions × 10 triples holds about 1,700 quads
//! (with chain metadata); one key per quad in six indexes is ~10,000 keys, ~100 ms per block.
//! So the dataset is stored the way an LSM tree stores it: every commit writes **one segment**
//! of a few dozen values, and small segments are merged into larger ones off the commit path
//! ([`crate::Store::merge_segments`]), so a lookup visits a bounded, logarithmic number of
//! segments.
//!
//! # Layout
//!
//! A segment holds ten *sections* of sorted, unique records:
//!
//! | section | records | order |
//! |---|---|---|
//! | 0–5 | quads as four term ids, permuted per index (`spog posg ospg gspo gpos gosp`) | key |
//! | 6 | term dictionary: 128-bit term hash → term id | hash |
//! | 7 | transactions: tx id → height, index, triple count | tx id |
//! | 8 | canonical digests: digest, height, index → tx id | digest |
//! | 9 | canonical digests: tx id → digest | tx id |
//!
//! Each section is cut into pages (up to [`QUAD_PAGE`] / [`TERM_PAGE`] / [`TX_PAGE`] /
//! [`DIGEST_PAGE`] records), each one sled value in the `segments` tree under
//! `segment id (u64 BE) ‖ section (u8) ‖ page number (u32 BE)`. Quad pages are
//! delta-encoded (about 4–6 bytes per quad instead of 32). The segment *header*
//! (`segment id ‖ 0xFF`) holds, per section, the first record of every page (the page
//! directory) and the record counts, plus blocked Bloom filters over the term hashes and
//! the transaction ids and the digests. Headers of live segments are kept in memory
//! ([`Segment`]), so a lookup finds its page by binary search and reads one value, and a
//! term, transaction or digest absent from a segment is usually rejected without any read.
//! (Headers of version 1, written before the digest sections existed, decode with empty
//! ones.)
//!
//! Segments are immutable. Which ones are live is recorded in the `meta` tree (the
//! *manifest*), updated atomically with the final head; see [`crate::store`] for the commit
//! protocol and crash recovery.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::dict::AnyPage;
use crate::error::DatasetError;

/// Quad sections (one per index permutation).
pub(crate) const QUAD_SECTIONS: usize = 6;
/// Section of the term hash → id records.
pub(crate) const SECTION_TERMS: u8 = 6;
/// Section of the transaction records.
pub(crate) const SECTION_TXS: u8 = 7;
/// Section of the canonical digest records, by digest.
pub(crate) const SECTION_DIGESTS: u8 = 8;
/// Section of the canonical digest records, by transaction.
pub(crate) const SECTION_TX_DIGESTS: u8 = 9;
/// Key suffix of a segment's header.
const SECTION_HEADER: u8 = 0xFF;
/// Records per page: pages of 2–4 KB. Larger pages would cut sled's per-value cost further,
/// but sled 0.34 keeps values over a few KB in memory for good (see
/// [`crate::store::MAX_VALUE`]); a point lookup decodes one page.
pub(crate) const QUAD_PAGE: usize = 640;
pub(crate) const TERM_PAGE: usize = 192;
pub(crate) const TX_PAGE: usize = 96;
pub(crate) const DIGEST_PAGE: usize = 48;
pub(crate) const TX_DIGEST_PAGE: usize = 56;
/// Version 2 added the digest sections (directories and the Bloom filter over digests) at
/// the end of the header.
const HEADER_VERSION: u8 = 2;

/// A quad as four term ids, in the component order of one index permutation.
pub(crate) type QuadKey = [u64; 4];

/// One entry of the term dictionary's hash index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TermRec {
    pub(crate) hash: u128,
    pub(crate) id: u64,
}

/// One entry of the transaction index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TxRec {
    pub(crate) id: [u8; 32],
    pub(crate) height: u64,
    pub(crate) index: u32,
    pub(crate) triples: u64,
}

/// One entry of the digest index: a final transaction whose document has canonical digest
/// `digest`, at `height` / `index`. Ordered by digest, then position (oldest first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DigestRec {
    pub(crate) digest: [u8; 32],
    pub(crate) height: u64,
    pub(crate) index: u32,
    pub(crate) id: [u8; 32],
}

/// A final transaction's canonical digest, by transaction id (transactions whose document
/// has none are not listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TxDigestRec {
    pub(crate) id: [u8; 32],
    pub(crate) digest: [u8; 32],
}

fn corrupt(detail: impl Into<String>) -> DatasetError {
    DatasetError::Corrupt {
        what: "segment",
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Byte helpers

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_u64v(out: &mut Vec<u8>, v: u64) {
    put_varint(out, u128::from(v));
}

/// Bounded reader over a stored value; every read fails cleanly on truncated input.
pub(crate) struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    fn varint(&mut self) -> Option<u128> {
        // Up to nine bytes fit in 63 bits: the common case, without 128-bit arithmetic.
        let mut v: u64 = 0;
        for i in 0..9 {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(u128::from(v));
            }
        }
        let mut v = u128::from(v);
        for i in 9..19 {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u128::from(byte & 0x7f).checked_shl(7 * i)?;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn u64v(&mut self) -> Option<u64> {
        u64::try_from(self.varint()?).ok()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.fixed()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.fixed()?))
    }
    /// A record count that the remaining input can hold at `min_size` bytes per record.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u64v()?).ok()?;
        (n.checked_mul(min_size)? <= self.remaining()).then_some(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Records

/// A sorted record type stored in a section.
pub(crate) trait Rec: Copy + Ord + Send + Sync + std::fmt::Debug + 'static {
    /// Size of the raw (directory) encoding.
    const RAW: usize;
    const MIN: Self;
    fn write_raw(&self, out: &mut Vec<u8>);
    fn read_raw(r: &mut Bytes<'_>) -> Option<Self>;
    fn encode_page(recs: &[Self], out: &mut Vec<u8>);
    fn decode_page(b: &[u8]) -> Option<Vec<Self>>;
    /// The section's directory in a segment.
    fn dir(seg: &Segment, section: u8) -> &Directory<Self>;
    /// Records per page.
    fn per_page() -> usize;
    fn to_any(page: Arc<Vec<Self>>) -> AnyPage;
    fn from_any(page: &AnyPage) -> Option<Arc<Vec<Self>>>;
}

/// The [`Rec`] methods that tie a record type with one section per segment to that section:
/// the segment's directory field, records per page, and the page cache's variant.
macro_rules! section {
    ($field:ident, $per_page:expr, $variant:ident) => {
        fn dir(seg: &Segment, _: u8) -> &Directory<Self> {
            &seg.$field
        }
        fn per_page() -> usize {
            $per_page
        }
        fn to_any(page: Arc<Vec<Self>>) -> AnyPage {
            AnyPage::$variant(page)
        }
        fn from_any(page: &AnyPage) -> Option<Arc<Vec<Self>>> {
            match page {
                AnyPage::$variant(p) => Some(p.clone()),
                _ => None,
            }
        }
    };
}

impl Rec for QuadKey {
    const RAW: usize = 32;
    const MIN: Self = [0; 4];
    fn write_raw(&self, out: &mut Vec<u8>) {
        for c in self {
            out.extend_from_slice(&c.to_be_bytes());
        }
    }
    fn read_raw(r: &mut Bytes<'_>) -> Option<Self> {
        Some([r.u64()?, r.u64()?, r.u64()?, r.u64()?])
    }
    /// First record in full (varints); each next one as `(delta of the first differing
    /// component) << 2 | its position`, then the later components as zigzag deltas from the
    /// previous record's. Sorted, sequentially assigned ids make most of these one byte.
    fn encode_page(recs: &[Self], out: &mut Vec<u8>) {
        put_u64v(out, recs.len() as u64);
        let mut prev: Option<&QuadKey> = None;
        for q in recs {
            match prev {
                None => {
                    for &c in q {
                        put_u64v(out, c);
                    }
                }
                Some(p) => {
                    let d = (0..4).find(|&d| q[d] != p[d]).unwrap_or(3);
                    let delta = q[d].wrapping_sub(p[d]);
                    put_varint(out, (u128::from(delta) << 2) | d as u128);
                    for j in d + 1..4 {
                        let diff = q[j].wrapping_sub(p[j]) as i64;
                        put_u64v(out, ((diff << 1) ^ (diff >> 63)) as u64);
                    }
                }
            }
            prev = Some(q);
        }
    }
    fn decode_page(b: &[u8]) -> Option<Vec<Self>> {
        let mut r = Bytes::new(b);
        let n = r.count(1)?;
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return Some(out);
        }
        let mut cur = [r.u64v()?, r.u64v()?, r.u64v()?, r.u64v()?];
        out.push(cur);
        for _ in 1..n {
            let v = r.varint()?;
            let d = (v & 3) as usize;
            let delta = u64::try_from(v >> 2).ok()?;
            if delta == 0 {
                return None;
            }
            cur[d] = cur[d].wrapping_add(delta);
            for c in cur.iter_mut().skip(d + 1) {
                let z = r.u64v()?;
                let diff = ((z >> 1) as i64) ^ -((z & 1) as i64);
                *c = c.wrapping_add(diff as u64);
            }
            out.push(cur);
        }
        Some(out)
    }
    fn dir(seg: &Segment, section: u8) -> &Directory<Self> {
        &seg.quads[usize::from(section).min(QUAD_SECTIONS - 1)]
    }
    fn per_page() -> usize {
        QUAD_PAGE
    }
    fn to_any(page: Arc<Vec<Self>>) -> AnyPage {
        AnyPage::Quads(page)
    }
    fn from_any(page: &AnyPage) -> Option<Arc<Vec<Self>>> {
        match page {
            AnyPage::Quads(p) => Some(p.clone()),
            _ => None,
        }
    }
}

impl Rec for TermRec {
    const RAW: usize = 24;
    const MIN: Self = TermRec { hash: 0, id: 0 };
    fn write_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
    }
    fn read_raw(r: &mut Bytes<'_>) -> Option<Self> {
        Some(TermRec {
            hash: u128::from_be_bytes(r.fixed()?),
            id: r.u64()?,
        })
    }
    fn encode_page(recs: &[Self], out: &mut Vec<u8>) {
        put_u64v(out, recs.len() as u64);
        for t in recs {
            out.extend_from_slice(&t.hash.to_be_bytes());
            put_u64v(out, t.id);
        }
    }
    fn decode_page(b: &[u8]) -> Option<Vec<Self>> {
        let mut r = Bytes::new(b);
        let n = r.count(17)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(TermRec {
                hash: u128::from_be_bytes(r.fixed()?),
                id: r.u64v()?,
            });
        }
        Some(out)
    }
    section!(terms, TERM_PAGE, Terms);
}

impl Rec for TxRec {
    const RAW: usize = 52;
    const MIN: Self = TxRec {
        id: [0; 32],
        height: 0,
        index: 0,
        triples: 0,
    };
    fn write_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.triples.to_be_bytes());
    }
    fn read_raw(r: &mut Bytes<'_>) -> Option<Self> {
        Some(TxRec {
            id: r.fixed()?,
            height: r.u64()?,
            index: r.u32()?,
            triples: r.u64()?,
        })
    }
    fn encode_page(recs: &[Self], out: &mut Vec<u8>) {
        put_u64v(out, recs.len() as u64);
        for t in recs {
            out.extend_from_slice(&t.id);
            put_u64v(out, t.height);
            put_u64v(out, u64::from(t.index));
            put_u64v(out, t.triples);
        }
    }
    fn decode_page(b: &[u8]) -> Option<Vec<Self>> {
        let mut r = Bytes::new(b);
        let n = r.count(35)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(TxRec {
                id: r.fixed()?,
                height: r.u64v()?,
                index: u32::try_from(r.u64v()?).ok()?,
                triples: r.u64v()?,
            });
        }
        Some(out)
    }
    section!(txs, TX_PAGE, Txs);
}

impl Rec for DigestRec {
    const RAW: usize = 76;
    const MIN: Self = DigestRec {
        digest: [0; 32],
        height: 0,
        index: 0,
        id: [0; 32],
    };
    fn write_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.id);
    }
    fn read_raw(r: &mut Bytes<'_>) -> Option<Self> {
        Some(DigestRec {
            digest: r.fixed()?,
            height: r.u64()?,
            index: r.u32()?,
            id: r.fixed()?,
        })
    }
    fn encode_page(recs: &[Self], out: &mut Vec<u8>) {
        put_u64v(out, recs.len() as u64);
        for d in recs {
            out.extend_from_slice(&d.digest);
            put_u64v(out, d.height);
            put_u64v(out, u64::from(d.index));
            out.extend_from_slice(&d.id);
        }
    }
    fn decode_page(b: &[u8]) -> Option<Vec<Self>> {
        let mut r = Bytes::new(b);
        let n = r.count(66)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(DigestRec {
                digest: r.fixed()?,
                height: r.u64v()?,
                index: u32::try_from(r.u64v()?).ok()?,
                id: r.fixed()?,
            });
        }
        Some(out)
    }
    section!(digests, DIGEST_PAGE, Digests);
}

impl Rec for TxDigestRec {
    const RAW: usize = 64;
    const MIN: Self = TxDigestRec {
        id: [0; 32],
        digest: [0; 32],
    };
    fn write_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.digest);
    }
    fn read_raw(r: &mut Bytes<'_>) -> Option<Self> {
        Some(TxDigestRec {
            id: r.fixed()?,
            digest: r.fixed()?,
        })
    }
    fn encode_page(recs: &[Self], out: &mut Vec<u8>) {
        put_u64v(out, recs.len() as u64);
        for d in recs {
            d.write_raw(out);
        }
    }
    fn decode_page(b: &[u8]) -> Option<Vec<Self>> {
        let mut r = Bytes::new(b);
        let n = r.count(Self::RAW)?;
        (0..n).map(|_| Self::read_raw(&mut r)).collect()
    }
    section!(tx_digests, TX_DIGEST_PAGE, TxDigests);
}

// ---------------------------------------------------------------------------------------------
// Directories, Bloom filters, segment headers

/// Where a section's pages start: the first record of every page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory<R> {
    pub(crate) firsts: Vec<R>,
    pub(crate) last: Option<R>,
    pub(crate) total: u64,
}

impl<R: Rec> Directory<R> {
    /// Index of the page that would hold `key` (the last page whose first record is ≤ key).
    fn page_for(&self, key: &R) -> usize {
        self.firsts.partition_point(|f| f <= key).saturating_sub(1)
    }

    /// Whether any record can lie in `[lo, hi]`.
    fn overlaps(&self, lo: &R, hi: &R) -> bool {
        match (self.firsts.first(), &self.last) {
            (Some(first), Some(last)) => first <= hi && last >= lo,
            _ => false,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_u64v(out, self.total);
        put_u64v(out, self.firsts.len() as u64);
        for f in &self.firsts {
            f.write_raw(out);
        }
        if let Some(l) = &self.last {
            l.write_raw(out);
        }
    }

    fn decode(r: &mut Bytes<'_>) -> Option<Self> {
        let total = r.u64v()?;
        let pages = r.count(R::RAW)?;
        let mut firsts = Vec::with_capacity(pages);
        for _ in 0..pages {
            firsts.push(R::read_raw(r)?);
        }
        let last = if pages > 0 {
            Some(R::read_raw(r)?)
        } else {
            None
        };
        Some(Self {
            firsts,
            last,
            total,
        })
    }
}

/// A blocked Bloom filter: every key sets [`BLOOM_K`] bits inside one 512-bit block, so a
/// probe costs one cache line. ~12 bits per key, about 1% false positives.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bloom {
    blocks: Vec<[u64; 8]>,
}

const BLOOM_K: u32 = 6;
const BLOOM_BITS_PER_KEY: usize = 12;

impl Bloom {
    pub(crate) fn with_capacity(keys: usize) -> Self {
        let n = (keys * BLOOM_BITS_PER_KEY).div_ceil(512).max(1);
        Self {
            blocks: vec![[0; 8]; n],
        }
    }

    /// The block a key maps to and the key's bits in it, as a mask per word.
    fn probe(&self, (h1, h2): (u64, u64)) -> (usize, [u64; 8]) {
        let block = (h1 % self.blocks.len() as u64) as usize;
        let mut mask = [0u64; 8];
        for i in 0..BLOOM_K {
            let bit = (h2.rotate_right(i * 9) & 511) as usize;
            mask[bit / 64] |= 1 << (bit % 64);
        }
        (block, mask)
    }

    pub(crate) fn insert(&mut self, h: (u64, u64)) {
        let (b, mask) = self.probe(h);
        for (w, m) in self.blocks[b].iter_mut().zip(mask) {
            *w |= m;
        }
    }

    pub(crate) fn may_contain(&self, h: (u64, u64)) -> bool {
        let (b, mask) = self.probe(h);
        let block = &self.blocks[b];
        (0..8).all(|w| block[w] & mask[w] == mask[w])
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_u64v(out, self.blocks.len() as u64);
        for b in &self.blocks {
            for w in b {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }

    fn decode(r: &mut Bytes<'_>) -> Option<Self> {
        let n = r.count(64)?;
        if n == 0 {
            return None;
        }
        let mut blocks = Vec::with_capacity(n);
        for _ in 0..n {
            let mut b = [0u64; 8];
            for w in &mut b {
                *w = u64::from_le_bytes(r.fixed()?);
            }
            blocks.push(b);
        }
        Some(Self { blocks })
    }

    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() * 64
    }
}

pub(crate) fn term_bloom_hash(hash: u128) -> (u64, u64) {
    (hash as u64, (hash >> 64) as u64 | 1)
}

pub(crate) fn tx_bloom_hash(id: &[u8; 32]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&id[..8]);
    b.copy_from_slice(&id[8..16]);
    (u64::from_le_bytes(a), u64::from_le_bytes(b) | 1)
}

/// A live segment's header, kept in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Segment {
    pub(crate) id: u64,
    pub(crate) quads: [Directory<QuadKey>; QUAD_SECTIONS],
    pub(crate) terms: Directory<TermRec>,
    pub(crate) txs: Directory<TxRec>,
    pub(crate) digests: Directory<DigestRec>,
    pub(crate) term_bloom: Bloom,
    pub(crate) tx_bloom: Bloom,
    /// Over the digests (empty in a version-1 segment, whose digest section is empty).
    pub(crate) digest_bloom: Bloom,
    pub(crate) tx_digests: Directory<TxDigestRec>,
}

impl Segment {
    pub(crate) fn quad_count(&self) -> u64 {
        self.quads[0].total
    }

    /// Bytes of memory the header holds (directories and filters).
    pub(crate) fn memory(&self) -> usize {
        self.quads
            .iter()
            .map(|d| d.firsts.len() * 32)
            .sum::<usize>()
            + self.terms.firsts.len() * 24
            + self.txs.firsts.len() * 52
            + self.digests.firsts.len() * 76
            + self.tx_digests.firsts.len() * 64
            + self.term_bloom.bytes()
            + self.tx_bloom.bytes()
            + self.digest_bloom.bytes()
    }

    /// Whether this segment may hold records of `digest`.
    pub(crate) fn may_hold_digest(&self, digest: &[u8; 32]) -> bool {
        !self.digests.firsts.is_empty() && self.digest_bloom.may_contain(tx_bloom_hash(digest))
    }

    fn encode(&self) -> Vec<u8> {
        self.encode_as(HEADER_VERSION)
    }

    /// The header as `version` laid it out: version 1 had no digest sections.
    pub(crate) fn encode_as(&self, version: u8) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(version);
        put_u64v(&mut out, self.id);
        for d in &self.quads {
            d.encode(&mut out);
        }
        self.terms.encode(&mut out);
        self.txs.encode(&mut out);
        self.term_bloom.encode(&mut out);
        self.tx_bloom.encode(&mut out);
        if version >= 2 {
            self.digests.encode(&mut out);
            self.digest_bloom.encode(&mut out);
            self.tx_digests.encode(&mut out);
        }
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DatasetError> {
        let mut r = Bytes::new(b);
        let parse = |r: &mut Bytes<'_>| -> Option<Segment> {
            let version = r.u8()?;
            if version != 1 && version != HEADER_VERSION {
                return None;
            }
            let id = r.u64v()?;
            let quads = [
                Directory::decode(r)?,
                Directory::decode(r)?,
                Directory::decode(r)?,
                Directory::decode(r)?,
                Directory::decode(r)?,
                Directory::decode(r)?,
            ];
            let mut seg = Segment {
                id,
                quads,
                terms: Directory::decode(r)?,
                txs: Directory::decode(r)?,
                term_bloom: Bloom::decode(r)?,
                tx_bloom: Bloom::decode(r)?,
                ..Default::default()
            };
            if version >= 2 {
                seg.digests = Directory::decode(r)?;
                seg.digest_bloom = Bloom::decode(r)?;
                seg.tx_digests = Directory::decode(r)?;
            }
            Some(seg)
        };
        parse(&mut r).ok_or_else(|| corrupt("segment header does not decode"))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

pub(crate) fn page_key(seg: u64, section: u8, page: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..8].copy_from_slice(&seg.to_be_bytes());
    k[8] = section;
    k[9..].copy_from_slice(&page.to_be_bytes());
    k
}

pub(crate) fn header_key(seg: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&seg.to_be_bytes());
    k[8] = SECTION_HEADER;
    k
}

/// Segment id of any key in the `segments` tree.
pub(crate) fn key_segment(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Receives the pages of a segment being written.
pub(crate) trait PageSink {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DatasetError>;
}

/// Cuts one section's sorted records into pages and builds its directory.
struct SectionWriter<R: Rec> {
    seg: u64,
    section: u8,
    buf: Vec<R>,
    dir: Directory<R>,
    prev: Option<R>,
}

impl<R: Rec> SectionWriter<R> {
    fn new(seg: u64, section: u8) -> Self {
        Self {
            seg,
            section,
            buf: Vec::with_capacity(R::per_page()),
            dir: Directory {
                firsts: Vec::new(),
                last: None,
                total: 0,
            },
            prev: None,
        }
    }

    /// Appends a record; records must arrive in strictly increasing order (duplicates are
    /// dropped, an out-of-order record is corruption of an input).
    fn push(&mut self, r: R, sink: &mut dyn PageSink) -> Result<(), DatasetError> {
        if let Some(p) = &self.prev {
            if *p == r {
                return Ok(());
            }
            if *p > r {
                return Err(corrupt(format!(
                    "section {} records out of order while writing segment {}",
                    self.section, self.seg
                )));
            }
        }
        self.prev = Some(r);
        self.buf.push(r);
        if self.buf.len() >= R::per_page() {
            self.flush_page(sink)?;
        }
        Ok(())
    }

    fn flush_page(&mut self, sink: &mut dyn PageSink) -> Result<(), DatasetError> {
        let Some(first) = self.buf.first().copied() else {
            return Ok(());
        };
        let page = u32::try_from(self.dir.firsts.len())
            .map_err(|_| corrupt("too many pages in one segment section"))?;
        let mut v = Vec::with_capacity(self.buf.len() * 6 + 8);
        R::encode_page(&self.buf, &mut v);
        sink.put(page_key(self.seg, self.section, page).to_vec(), v)?;
        self.dir.firsts.push(first);
        self.dir.total += self.buf.len() as u64;
        self.dir.last = self.buf.last().copied();
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self, sink: &mut dyn PageSink) -> Result<Directory<R>, DatasetError> {
        self.flush_page(sink)?;
        Ok(self.dir)
    }
}

/// The contents of a new segment, gathered by a commit.
#[derive(Debug, Default)]
pub(crate) struct SegmentData {
    /// Quads as `[s, p, o, g]` term ids; unique.
    pub(crate) quads: Vec<[u64; 4]>,
    pub(crate) terms: Vec<TermRec>,
    pub(crate) txs: Vec<TxRec>,
    /// Digest records of the transactions that have a canonical digest, both ways.
    pub(crate) digests: Vec<DigestRec>,
    pub(crate) tx_digests: Vec<TxDigestRec>,
}

/// Permutation of quad positions per index: key slot → quad position (s=0 p=1 o=2 g=3).
pub(crate) const PERMS: [[usize; 4]; QUAD_SECTIONS] = [
    [0, 1, 2, 3],
    [1, 2, 0, 3],
    [2, 0, 1, 3],
    [3, 0, 1, 2],
    [3, 1, 2, 0],
    [3, 2, 0, 1],
];

/// `[s, p, o, g]` in index `k`'s order.
pub(crate) fn permute(k: usize, q: &[u64; 4]) -> QuadKey {
    let p = &PERMS[k];
    [q[p[0]], q[p[1]], q[p[2]], q[p[3]]]
}

/// Index `k`'s key back to `[s, p, o, g]`.
pub(crate) fn unpermute(k: usize, key: &QuadKey) -> [u64; 4] {
    let mut q = [0u64; 4];
    for (slot, &pos) in PERMS[k].iter().enumerate() {
        q[pos] = key[slot];
    }
    q
}

/// Writes a new segment from in-memory records.
pub(crate) fn build(
    id: u64,
    mut data: SegmentData,
    sink: &mut dyn PageSink,
) -> Result<Segment, DatasetError> {
    let mut seg = Segment {
        id,
        ..Default::default()
    };
    let mut keys: Vec<QuadKey> = Vec::with_capacity(data.quads.len());
    for k in 0..QUAD_SECTIONS {
        keys.clear();
        keys.extend(data.quads.iter().map(|q| permute(k, q)));
        keys.sort_unstable();
        let mut w = SectionWriter::new(id, k as u8);
        for key in &keys {
            w.push(*key, sink)?;
        }
        seg.quads[k] = w.finish(sink)?;
    }
    data.terms.sort_unstable();
    seg.term_bloom = Bloom::with_capacity(data.terms.len());
    let mut w = SectionWriter::new(id, SECTION_TERMS);
    for t in &data.terms {
        seg.term_bloom.insert(term_bloom_hash(t.hash));
        w.push(*t, sink)?;
    }
    seg.terms = w.finish(sink)?;
    data.txs.sort_unstable();
    seg.tx_bloom = Bloom::with_capacity(data.txs.len());
    let mut w = SectionWriter::new(id, SECTION_TXS);
    for t in &data.txs {
        seg.tx_bloom.insert(tx_bloom_hash(&t.id));
        w.push(*t, sink)?;
    }
    seg.txs = w.finish(sink)?;
    data.digests.sort_unstable();
    seg.digest_bloom = Bloom::with_capacity(data.digests.len());
    let mut w = SectionWriter::new(id, SECTION_DIGESTS);
    for d in &data.digests {
        seg.digest_bloom.insert(tx_bloom_hash(&d.digest));
        w.push(*d, sink)?;
    }
    seg.digests = w.finish(sink)?;
    data.tx_digests.sort_unstable();
    let mut w = SectionWriter::new(id, SECTION_TX_DIGESTS);
    for d in &data.tx_digests {
        w.push(*d, sink)?;
    }
    seg.tx_digests = w.finish(sink)?;
    sink.put(header_key(id).to_vec(), seg.encode())?;
    Ok(seg)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Loads decoded pages (through a cache or not).
pub(crate) trait PageSource {
    fn page<R: Rec>(
        &self,
        seg: &Segment,
        section: u8,
        page: usize,
    ) -> Result<Arc<Vec<R>>, DatasetError>;
}

/// Records of one section of one segment in `[lo, hi]`, ascending.
pub(crate) struct Cursor<'s, R: Rec, S: PageSource> {
    src: &'s S,
    seg: Arc<Segment>,
    section: u8,
    page: usize,
    recs: Arc<Vec<R>>,
    pos: usize,
    hi: R,
    done: bool,
}

impl<'s, R: Rec, S: PageSource> Cursor<'s, R, S> {
    pub(crate) fn new(
        src: &'s S,
        seg: Arc<Segment>,
        section: u8,
        lo: R,
        hi: R,
    ) -> Result<Self, DatasetError> {
        let dir = R::dir(&seg, section);
        let mut c = Self {
            src,
            section,
            page: 0,
            recs: Arc::new(Vec::new()),
            pos: 0,
            hi,
            done: !dir.overlaps(&lo, &hi),
            seg: seg.clone(),
        };
        if !c.done {
            c.page = dir.page_for(&lo);
            c.recs = src.page(&seg, section, c.page)?;
            c.pos = c.recs.partition_point(|r| *r < lo);
        }
        Ok(c)
    }

    pub(crate) fn next_rec(&mut self) -> Result<Option<R>, DatasetError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(r) = self.recs.get(self.pos) {
                if *r > self.hi {
                    self.done = true;
                    return Ok(None);
                }
                self.pos += 1;
                return Ok(Some(*r));
            }
            self.page += 1;
            if self.page >= R::dir(&self.seg, self.section).firsts.len() {
                self.done = true;
                return Ok(None);
            }
            self.recs = self.src.page(&self.seg, self.section, self.page)?;
            self.pos = 0;
        }
    }
}

/// Records of one section across segments in `[lo, hi]`, merged into one ascending stream.
pub(crate) struct MergedScan<'s, R: Rec, S: PageSource> {
    cursors: Vec<Cursor<'s, R, S>>,
    heap: BinaryHeap<Reverse<(R, usize)>>,
    failed: bool,
}

impl<'s, R: Rec, S: PageSource> MergedScan<'s, R, S> {
    pub(crate) fn new(
        src: &'s S,
        segs: &[Arc<Segment>],
        section: u8,
        lo: R,
        hi: R,
    ) -> Result<Self, DatasetError> {
        let mut cursors = Vec::new();
        let mut heap = BinaryHeap::new();
        for seg in segs {
            let mut c = Cursor::new(src, seg.clone(), section, lo, hi)?;
            if let Some(r) = c.next_rec()? {
                heap.push(Reverse((r, cursors.len())));
                cursors.push(c);
            }
        }
        Ok(Self {
            cursors,
            heap,
            failed: false,
        })
    }
}

impl<R: Rec, S: PageSource> Iterator for MergedScan<'_, R, S> {
    type Item = Result<R, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let Reverse((r, i)) = self.heap.pop()?;
        match self.cursors[i].next_rec() {
            Ok(Some(n)) => self.heap.push(Reverse((n, i))),
            Ok(None) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        Some(Ok(r))
    }
}

/// The record equal to `key` under `eq` in the first segment (newest first) that has one.
/// `bloom` filters segments before any read.
pub(crate) fn find<R: Rec, S: PageSource>(
    src: &S,
    segs: &[Arc<Segment>],
    section: u8,
    lo: R,
    bloom: impl Fn(&Segment) -> bool,
    eq: impl Fn(&R) -> bool,
) -> Result<Option<R>, DatasetError> {
    for seg in segs.iter().rev() {
        if !bloom(seg) {
            continue;
        }
        let dir = R::dir(seg, section);
        if dir.firsts.is_empty() {
            continue;
        }
        let page = dir.page_for(&lo);
        let recs = src.page::<R>(seg, section, page)?;
        let pos = recs.partition_point(|r| *r < lo);
        // Past this page's end, the next candidate is the next page's first record, which
        // the directory holds.
        let candidate = match recs.get(pos) {
            Some(r) => Some(*r),
            None => dir.firsts.get(page + 1).copied(),
        };
        if let Some(r) = candidate.filter(|r| eq(r)) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// One input of a merge: its current page and position.
struct MergeInput<R> {
    seg: Arc<Segment>,
    section: u8,
    page: usize,
    recs: Arc<Vec<R>>,
    pos: usize,
}

/// Merges one section of `inputs` (sorted, disjoint) into `w`, calling `each` on every
/// record. Takes runs: the input with the smallest head gives every record below the other
/// inputs' smallest head in one go, so long runs (the common case: ids are assigned in time
/// order) cost a binary search, not a comparison per record and input.
fn merge_section<R: Rec, S: PageSource>(
    src: &S,
    inputs: &[Arc<Segment>],
    section: u8,
    w: &mut SectionWriter<R>,
    sink: &mut dyn PageSink,
    mut each: impl FnMut(&R),
) -> Result<(), DatasetError> {
    let mut ins: Vec<MergeInput<R>> = Vec::with_capacity(inputs.len());
    for seg in inputs {
        if !R::dir(seg, section).firsts.is_empty() {
            ins.push(MergeInput {
                recs: src.page(seg, section, 0)?,
                seg: seg.clone(),
                section,
                page: 0,
                pos: 0,
            });
        }
    }
    loop {
        // Refill exhausted pages; drop exhausted inputs.
        let mut i = 0;
        while i < ins.len() {
            let inp = &mut ins[i];
            if inp.pos < inp.recs.len() {
                i += 1;
                continue;
            }
            inp.page += 1;
            if inp.page < R::dir(&inp.seg, inp.section).firsts.len() {
                inp.recs = src.page(&inp.seg, inp.section, inp.page)?;
                inp.pos = 0;
            } else {
                ins.swap_remove(i);
            }
        }
        if ins.is_empty() {
            return Ok(());
        }
        let mut min = 0;
        for j in 1..ins.len() {
            if ins[j].recs[ins[j].pos] < ins[min].recs[ins[min].pos] {
                min = j;
            }
        }
        let bound = (0..ins.len())
            .filter(|&j| j != min)
            .map(|j| ins[j].recs[ins[j].pos])
            .min();
        let inp = &mut ins[min];
        let rest = &inp.recs[inp.pos..];
        let n = match bound {
            None => rest.len(),
            Some(b) => rest.partition_point(|r| *r < b).max(1),
        };
        for r in &rest[..n] {
            each(r);
            w.push(*r, sink)?;
        }
        inp.pos += n;
    }
}

/// Merges `inputs` into a new segment `id`, streaming page by page.
pub(crate) fn merge<S: PageSource>(
    src: &S,
    id: u64,
    inputs: &[Arc<Segment>],
    sink: &mut dyn PageSink,
) -> Result<Segment, DatasetError> {
    let mut seg = Segment {
        id,
        ..Default::default()
    };
    for k in 0..QUAD_SECTIONS {
        let mut w = SectionWriter::new(id, k as u8);
        merge_section::<QuadKey, S>(src, inputs, k as u8, &mut w, sink, |_| {})?;
        seg.quads[k] = w.finish(sink)?;
    }
    let terms: u64 = inputs.iter().map(|s| s.terms.total).sum();
    let mut bloom = Bloom::with_capacity(terms as usize);
    let mut w = SectionWriter::new(id, SECTION_TERMS);
    merge_section::<TermRec, S>(src, inputs, SECTION_TERMS, &mut w, sink, |r| {
        bloom.insert(term_bloom_hash(r.hash))
    })?;
    seg.terms = w.finish(sink)?;
    seg.term_bloom = bloom;
    let txs: u64 = inputs.iter().map(|s| s.txs.total).sum();
    let mut bloom = Bloom::with_capacity(txs as usize);
    let mut w = SectionWriter::new(id, SECTION_TXS);
    merge_section::<TxRec, S>(src, inputs, SECTION_TXS, &mut w, sink, |r| {
        bloom.insert(tx_bloom_hash(&r.id))
    })?;
    seg.txs = w.finish(sink)?;
    seg.tx_bloom = bloom;
    let digests: u64 = inputs.iter().map(|s| s.digests.total).sum();
    let mut bloom = Bloom::with_capacity(digests as usize);
    let mut w = SectionWriter::new(id, SECTION_DIGESTS);
    merge_section::<DigestRec, S>(src, inputs, SECTION_DIGESTS, &mut w, sink, |r| {
        bloom.insert(tx_bloom_hash(&r.digest))
    })?;
    seg.digests = w.finish(sink)?;
    seg.digest_bloom = bloom;
    let mut w = SectionWriter::new(id, SECTION_TX_DIGESTS);
    merge_section::<TxDigestRec, S>(src, inputs, SECTION_TX_DIGESTS, &mut w, sink, |_| {})?;
    seg.tx_digests = w.finish(sink)?;
    sink.put(header_key(id).to_vec(), seg.encode())?;
    Ok(seg)
}

/// Which tail of the live segments (oldest first) to merge next, if any: the longest tail of
/// at least [`MERGE_FANIN`] segments whose oldest member is at most `1 / (MERGE_FANIN - 1)`
/// of the rest of the tail together. Equal-sized commits make it a base-[`MERGE_FANIN`]
/// counter; for any mix of sizes (empty blocks, full blocks, a sync batch) it keeps about
/// `3 · log₄ N` segments and rewrites each quad about `log₄ N` times (a merge never
/// rewrites a large segment to absorb a small one).
pub(crate) fn merge_candidate(sizes: &[u64]) -> Option<usize> {
    let n = sizes.len();
    if n < MERGE_FANIN {
        return None;
    }
    let mut rest = 0u64;
    let mut best = None;
    // From the newest back: `rest` is the total newer than `i`.
    for i in (0..n).rev() {
        if n - i >= MERGE_FANIN
            && sizes[i].saturating_mul(MERGE_FANIN as u64 - 1) <= rest.max(MERGE_FANIN as u64 - 1)
        {
            best = Some(i);
        }
        rest = rest.saturating_add(sizes[i]);
    }
    best
}

/// Segments merged at once.
pub(crate) const MERGE_FANIN: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_pages_round_trip() {
        let mut recs: Vec<QuadKey> = vec![
            [1, 2, 3, 4],
            [1, 2, 3, 9],
            [1, 2, 7, 0],
            [1, 5, 0, u64::MAX],
            [2, 0, 0, 0],
            [u64::MAX - 1, 0, 5, 1],
            [u64::MAX, u64::MAX, u64::MAX, u64::MAX],
        ];
        recs.sort();
        let mut b = Vec::new();
        QuadKey::encode_page(&recs, &mut b);
        assert_eq!(QuadKey::decode_page(&b), Some(recs));
        for cut in 0..b.len() {
            // Truncations never panic.
            let _ = QuadKey::decode_page(&b[..cut]);
        }
    }

    #[test]
    fn other_pages_round_trip() {
        let t = vec![
            TermRec { hash: 1, id: 9 },
            TermRec {
                hash: u128::MAX,
                id: 1,
            },
        ];
        let mut b = Vec::new();
        TermRec::encode_page(&t, &mut b);
        assert_eq!(TermRec::decode_page(&b), Some(t));
        let x = vec![TxRec {
            id: [3; 32],
            height: 7,
            index: 2,
            triples: 10,
        }];
        let mut b = Vec::new();
        TxRec::encode_page(&x, &mut b);
        assert_eq!(TxRec::decode_page(&b), Some(x));
    }

    #[test]
    fn digest_pages_round_trip() {
        let mut d = vec![
            DigestRec {
                digest: [9; 32],
                height: 1,
                index: 0,
                id: [1; 32],
            },
            DigestRec {
                digest: [9; 32],
                height: u64::MAX,
                index: u32::MAX,
                id: [0xff; 32],
            },
            DigestRec {
                digest: [0; 32],
                height: 3,
                index: 7,
                id: [2; 32],
            },
        ];
        d.sort();
        let mut b = Vec::new();
        DigestRec::encode_page(&d, &mut b);
        assert_eq!(DigestRec::decode_page(&b), Some(d));
        for cut in 0..b.len() {
            assert_eq!(
                DigestRec::decode_page(&b[..cut]),
                None,
                "truncated at {cut}"
            );
        }
    }

    /// Collects a segment's pages in memory.
    struct Pages(Vec<(Vec<u8>, Vec<u8>)>);

    impl PageSink for Pages {
        fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DatasetError> {
            self.0.push((key, value));
            Ok(())
        }
    }

    #[test]
    fn headers_carry_the_digest_section_and_version_1_headers_still_decode() {
        let digest = DigestRec {
            digest: [4; 32],
            height: 2,
            index: 1,
            id: [5; 32],
        };
        let data = || SegmentData {
            quads: vec![[1, 2, 3, 4]],
            terms: vec![TermRec { hash: 5, id: 1 }],
            txs: vec![TxRec {
                id: [5; 32],
                height: 2,
                index: 1,
                triples: 1,
            }],
            digests: vec![digest],
            tx_digests: vec![TxDigestRec {
                id: [5; 32],
                digest: [4; 32],
            }],
        };
        let seg = build(3, data(), &mut Pages(Vec::new())).expect("build");
        let back = Segment::decode(&seg.encode()).expect("decode");
        assert_eq!((back.digests.total, back.tx_digests.total), (1, 1));
        assert_eq!(back.digests.firsts, vec![digest]);
        assert!(back.may_hold_digest(&[4; 32]));

        // What the version before the digest sections wrote.
        let v2 = seg.encode();
        let v1 = seg.encode_as(1);
        assert_eq!(v1[1..], v2[1..v1.len()], "version 2 appends to version 1");
        let old = Segment::decode(&v1).expect("a version-1 header decodes");
        assert_eq!((old.id, old.quad_count(), old.txs.total), (3, 1, 1));
        assert!(old.tx_bloom.may_contain(tx_bloom_hash(&[5; 32])));
        assert_eq!((old.digests.total, old.tx_digests.total), (0, 0));
        assert!(
            !old.may_hold_digest(&[4; 32]),
            "no digest section, no probe"
        );
        let mut v3 = v2.clone();
        v3[0] = 3;
        assert!(
            Segment::decode(&v3).is_err(),
            "unknown versions are refused"
        );
        for cut in 0..v2.len() {
            // Truncations never panic.
            let _ = Segment::decode(&v2[..cut]);
        }
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut b = Bloom::with_capacity(1000);
        for i in 0..1000u128 {
            b.insert(term_bloom_hash(
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            ));
        }
        for i in 0..1000u128 {
            assert!(b.may_contain(term_bloom_hash(
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
            )));
        }
        let fp = (1000..101_000u128)
            .filter(|i| {
                b.may_contain(term_bloom_hash(
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                ))
            })
            .count();
        assert!(fp < 5_000, "{fp} false positives in 100k");
    }

    #[test]
    fn merge_policy_keeps_few_segments_and_rewrites_little() {
        // Full blocks, empty blocks, a mix, and rare huge sync batches.
        let patterns: [fn(u64) -> u64; 4] = [
            |_| 1700,
            |_| 6,
            |i| [6, 1700, 17_000, 6, 6][(i * 7 % 5) as usize],
            |i| if i % 100 == 0 { 200_000 } else { 6 },
        ];
        for (k, size) in patterns.iter().enumerate() {
            let mut sizes: Vec<u64> = Vec::new();
            let (mut written, mut rewritten, mut max_len) = (0u64, 0u64, 0usize);
            for i in 0..3000 {
                sizes.push(size(i));
                written += size(i);
                while let Some(start) = merge_candidate(&sizes) {
                    let merged: u64 = sizes.drain(start..).sum();
                    rewritten += merged;
                    sizes.push(merged);
                }
                max_len = max_len.max(sizes.len());
            }
            assert_eq!(sizes.iter().sum::<u64>(), written);
            assert!(max_len <= 18, "pattern {k}: {max_len} segments");
            let per_quad = rewritten as f64 / written as f64;
            assert!(
                per_quad < 5.0,
                "pattern {k}: each quad rewritten {per_quad:.1} times"
            );
        }
    }

    #[test]
    fn permutations_round_trip() {
        let q = [1, 2, 3, 4];
        for k in 0..QUAD_SECTIONS {
            assert_eq!(unpermute(k, &permute(k, &q)), q);
        }
    }
}
