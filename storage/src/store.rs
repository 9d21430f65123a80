//! The [`Store`]: chain trees, pending blocks, the commit path and reads.
//!
//! # Commit protocol
//!
//! [`Store::commit_final`] first validates and plans everything — linkage to the final head,
//! duplicate transactions, parsing (unless parsed ahead, [`ParsedTx`]) and interning every
//! document — writing nothing on error.
//! Then, per step of at most [`MAX_QUADS_PER_STEP`] quads (whole blocks):
//!
//! 1. the step's new segment (pages and header, `segment`, with the canonical
//!    digests both ways), its chunks of new terms and, for transactions whose document has
//!    no digest, a row by position saying why are written; none is referenced or read yet
//!    (such a row is read only for the transaction final at its position, and must name
//!    it); **flush**;
//! 2. one sled transaction over `blocks`, `block_index`, `pending` and `meta` appends the
//!    blocks, removes them from the pending store, and records the new final head, the
//!    counters, the next ids and the new *manifest* (list of live segments); **flush**;
//! 3. the in-memory view (head, counters, live segments) is published to readers.
//!
//! The planning and step 1 can run ahead of finality: [`Store::prepare_commit`] does them for
//! blocks that extend the final head, and the commit of exactly those blocks on an unchanged
//! store then writes only step 2. A node prepares the commit of each block while it waits a
//! slot for the block that makes it final. Any other commit, or the next preparation, first
//! deletes what was prepared (its term chunks would otherwise shadow the ids the commit
//! assigns).
//!
//! Small segments are merged by [`Store::merge_segments`], which the node runs on a blocking
//! thread after each commit (`segment::merge_candidate` is the policy): the merged segment
//! is written and flushed without blocking commits, then, under the writer lock, the
//! manifest is switched in one `meta` batch and flushed; the replaced segments' pages are
//! deleted once no reader holds them.
//!
//! Step 2 is the commit point. A crash before it leaves unreferenced pages and term chunks
//! (ids ≥ the recorded next id), which [`Store::open`] deletes, and rows by position of
//! transactions that are not final there, which lookups skip and the next commit at that
//! position overwrites; a crash after it leaves a
//! complete block. The ordering does not rely on sled persisting writes in order: every
//! referenced value was flushed before the reference was written. Two fsyncs per commit
//! (plus two per merge), none per transaction.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use provchain_consensus::codec::Reader;
use provchain_consensus::{
    Block, BlockHeader, Decode, Encode, Genesis, GovernanceAction, GovernanceItem, Hash,
    Transaction,
};
use serde::Serialize;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sophia_api::term::Term;

use crate::dataset::{Core, SledDataset};
use crate::dict::{self, PageCache, TermCaches, corrupt_dict, term_hash};
use crate::digest::{self, CanonicalDigest, DigestError};
use crate::error::{DatasetError, StorageError};
use crate::rdf::{self, OwnedQuad};
use crate::segment::{
    self, DigestRec, MergedScan, PageSink, PageSource, QuadKey, Rec, SECTION_DIGESTS,
    SECTION_TERMS, SECTION_TX_DIGESTS, SECTION_TXS, Segment, SegmentData, TermRec, TxDigestRec,
    TxRec, term_bloom_hash, tx_bloom_hash,
};
use crate::term::{
    OwnedTerm, StoreTerm, XSD_DATE_TIME, XSD_INTEGER, decode_term, encode_term, iri,
    string_literal, typed_literal,
};
use crate::vocab;

/// Version of the on-disk layout. Bump on any incompatible change to trees or encodings.
/// (1: one sled key per quad and index; 2: segments.)
pub const SCHEMA_VERSION: u32 = 2;
/// Quads one commit step writes as one segment at most. A `commit_final` call with more is
/// split at block boundaries into several atomic steps (each leaves a consistent final
/// head), so a long sync batch cannot hold an unbounded write set in memory (~64 bytes per
/// quad while a step is planned).
pub const MAX_QUADS_PER_STEP: usize = 262_144;
/// Live segments beyond which [`Store::commit_final`] merges before it returns, for callers
/// that do not call [`Store::merge_segments`] in the background. With merges running, about
/// `3 · log₄(commits)` segments are live (12 at a million quads).
pub const SYNC_MERGE_SEGMENTS: usize = 24;
/// Bytes of segment pages (or term chunks) buffered before they are handed to sled. Small,
/// because sled 0.34 applies a batch under a process-wide lock that every read takes too: a
/// large batch from the writer or the merger (which run at a low priority) stalls the chain
/// task's reads. Neither needs atomicity of its own; the manifest update is the commit point.
const BATCH_BYTES: usize = 512 << 10;
/// Keys removed per sled batch when a segment's pages go (same lock as [`BATCH_BYTES`]).
const REMOVE_BATCH_KEYS: usize = 128;

const META_SCHEMA: &[u8] = b"schema_version";
const META_GENESIS: &[u8] = b"genesis";
const META_GENESIS_HASH: &[u8] = b"genesis_hash";
const META_FINAL_HEIGHT: &[u8] = b"final_height";
const META_FINAL_HASH: &[u8] = b"final_hash";
const META_NEXT_TERM: &[u8] = b"next_term_id";
const META_TRIPLES: &[u8] = b"triple_count";
const META_DATA_TRIPLES: &[u8] = b"data_triple_count";
const META_SEGMENTS: &[u8] = b"segments";
const META_NEXT_SEGMENT: &[u8] = b"next_segment_id";
/// First height whose transactions are in the digest index (databases created before the
/// index existed start it at their head at the time).
const META_DIGESTS_FROM: &[u8] = b"digests_from";
/// `governance_height/<height BE>`: a final block at that height carries governance items, so
/// the authority history can be rebuilt without reading every block.
const META_GOVERNANCE_HEIGHT: &[u8] = b"governance_height/";
/// Why a final transaction's document has no canonical digest, by its position:
/// `P ‖ height ‖ index` → `tx id ‖ 0x00 ‖ reason` (a rare row: the digests themselves are
/// segment sections, both ways). Keys follow the chain, so a commit appends its rows at the
/// end of the tree.
const DIGEST_AT: u8 = b'P';
/// Rows of databases written before the digest sections existed, read as a fallback:
/// `D ‖ digest ‖ height ‖ index` → tx id, and `T ‖ tx id` → the digest (32 bytes) or
/// `0x00 ‖ why there is none`. Random keys: every commit dirtied a sled page per row, which
/// cost a third of the commit throughput at a million triples and doubled the disk used.
const LEGACY_DIGEST_BY_VALUE: u8 = b'D';
const LEGACY_DIGEST_BY_TX: u8 = b'T';

/// Where a final transaction lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TxLocation {
    pub height: u64,
    /// Position in the block's transaction list.
    pub index: u32,
    /// Distinct statements the transaction's document holds.
    pub triples: u64,
}

impl TxLocation {
    fn of(tx: &TxRec) -> Self {
        TxLocation {
            height: tx.height,
            index: tx.index,
            triples: tx.triples,
        }
    }
}

/// A final transaction's canonical digest ([`crate::digest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxDigest {
    /// SHA-256 of the RDFC-1.0 canonical N-Quads of the document.
    Sha256(CanonicalDigest),
    /// The document is beyond the canonicalization bounds; why.
    Unavailable(String),
}

/// A transaction's RDF as a commit stores it: parsed, blank nodes labelled into the
/// transaction's scope, and its canonical digest. Parsing ahead of the commit (when the
/// transaction is admitted, ~10 µs for ten statements) and handing the result to
/// [`Store::commit_final_parsed`] takes it off the commit of the block.
#[derive(Debug, Clone)]
pub struct ParsedTx {
    quads: Vec<OwnedQuad>,
    digest: Result<CanonicalDigest, DigestError>,
}

impl ParsedTx {
    /// Parses `tx` (whose id is `id`). Fails on RDF the store would refuse.
    pub fn parse(id: &Hash, tx: &Transaction) -> Result<Self, rdf::RdfError> {
        let quads = rdf::parse(tx.body.format, &tx.body.data, &id.to_hex())?;
        let digest = digest::canonical_digest(&quads);
        Ok(Self { quads, digest })
    }

    /// Statements as parsed (duplicates included).
    pub fn statements(&self) -> usize {
        self.quads.len()
    }

    /// The canonical digest of the document (or why it has none).
    pub fn digest(&self) -> &Result<CanonicalDigest, DigestError> {
        &self.digest
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitStats {
    pub blocks: u64,
    pub transactions: u64,
    /// New quads in the dataset (transaction data plus chain metadata).
    pub triples: u64,
    /// Whether the commit applied writes prepared by [`Store::prepare_commit`].
    pub prepared: bool,
}

/// Shape of the dataset's storage, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StorageStats {
    /// Live segments (a lookup visits at most this many).
    pub segments: usize,
    pub quads: u64,
    /// Terms in the dictionary.
    pub terms: u64,
    /// Memory held by segment headers (page directories and Bloom filters).
    pub header_bytes: usize,
}

/// What readers see, published as one value after every commit step and merge: the final
/// head, the counters, and the live segments (oldest first). Holding one keeps its segments
/// readable, so a query or an integrity check works on one consistent state.
pub(crate) struct View {
    pub(crate) head: BlockHeader,
    pub(crate) triples: u64,
    pub(crate) data_triples: u64,
    pub(crate) next_term_id: u64,
    pub(crate) segments: Vec<Arc<Segment>>,
}

impl std::ops::Deref for View {
    type Target = [Arc<Segment>];
    fn deref(&self) -> &Self::Target {
        &self.segments
    }
}

pub(crate) type Live = Arc<View>;

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) blocks: sled::Tree,
    pub(crate) block_index: sled::Tree,
    pub(crate) pending: sled::Tree,
    pub(crate) meta: sled::Tree,
    /// id → term chunks ([`dict`]).
    pub(crate) terms: sled::Tree,
    /// Segment pages and headers ([`segment`]).
    pub(crate) segments: sled::Tree,
    /// Why final transactions have no canonical digest ([`crate::digest`]), by position
    /// ([`DIGEST_AT`]), and the digest rows of earlier versions; the digests themselves are
    /// segment sections.
    pub(crate) digests: sled::Tree,
    digests_from: AtomicU64,
    view: RwLock<Live>,
    /// Segments merged away, deleted once no reader holds them.
    graveyard: Mutex<Vec<Arc<Segment>>>,
    /// A merge is running ([`Store::merge_segments`] is single-flight).
    merging: std::sync::atomic::AtomicBool,
    pages: PageCache,
    pub(crate) dict: TermCaches,
    pub(crate) genesis: Genesis,
    pub(crate) genesis_hash: Hash,
    next_segment_id: AtomicU64,
    /// The store has one writer by contract; this makes a second one wait instead of corrupt.
    /// It guards the writer's state: the commit prepared ahead, if any.
    write_lock: Mutex<Option<Prepared>>,
}

/// A commit prepared before its blocks are final ([`Store::prepare_commit`]): planned, and
/// its segments, term chunks and digest rows written and flushed, unreferenced.
struct Prepared {
    /// The final head and next term id it was planned against.
    base: (Hash, u64),
    blocks: Vec<Hash>,
    steps: Vec<WrittenStep>,
}

impl Prepared {
    /// Whether this is the commit of `blocks` (by hash) on the store as `live` shows it.
    fn is_for(&self, live: &View, blocks: &[Hash]) -> bool {
        self.base == (live.head.hash(), live.next_term_id) && self.blocks == blocks
    }
}

/// The hashes of `blocks` if they extend `head` in order; otherwise the first that does not.
fn extends(head: &BlockHeader, blocks: &[Block]) -> Result<Vec<Hash>, StorageError> {
    let mut expected = (head.height + 1, head.hash());
    let mut hashes = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (h, hash) = (&b.header, b.hash());
        if h.height != expected.0 || h.parent_hash != expected.1 {
            return Err(StorageError::NotNextBlock {
                expected_height: expected.0,
                expected_parent: expected.1,
                got_height: h.height,
                got_parent: h.parent_hash,
                got_hash: hash,
            });
        }
        expected = (h.height + 1, hash);
        hashes.push(hash);
    }
    Ok(hashes)
}

/// A [`Step`] whose segment, term chunks and digest rows are written (protocol step 1): what
/// its commit point still has to write.
struct WrittenStep {
    seg: Segment,
    /// First ids of the term chunks written, to delete them if the step is dropped.
    chunks: Vec<u64>,
    blocks: Vec<(u64, Hash, Vec<u8>)>,
    stats: CommitStats,
    data_triples: u64,
    next_term_id: u64,
    head: BlockHeader,
    digests: Vec<DigestEntry>,
    governance_heights: Vec<u64>,
}

/// Handle to the database. Cheap to clone; reads from any thread, one writer.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("genesis", &self.inner.genesis_hash)
            .finish()
    }
}

pub(crate) fn u64_value(v: &[u8]) -> Option<u64> {
    let b: [u8; 8] = v.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn be_u64(v: Option<sled::IVec>, what: &str) -> Result<u64, StorageError> {
    let v = v.ok_or_else(|| StorageError::corrupt("metadata", format!("{what} is missing")))?;
    u64_value(&v)
        .ok_or_else(|| StorageError::corrupt("metadata", format!("{what} has {} bytes", v.len())))
}

fn hash_value(v: &[u8], what: &str) -> Result<Hash, StorageError> {
    let b: [u8; 32] = v
        .try_into()
        .map_err(|_| StorageError::corrupt(what, format!("{} bytes, expected 32", v.len())))?;
    Ok(Hash(b))
}

/// A transaction's id, height, index and canonical digest, for the digest index.
type DigestEntry = (Hash, u64, u32, Result<CanonicalDigest, DigestError>);

fn digest_at_key(height: u64, index: u32) -> Vec<u8> {
    [
        &[DIGEST_AT][..],
        &height.to_be_bytes(),
        &index.to_be_bytes(),
    ]
    .concat()
}

/// The row of a transaction whose document has no digest, by its position.
fn digest_row((tx, height, index, digest): &DigestEntry) -> Option<(Vec<u8>, Vec<u8>)> {
    let why = digest.as_ref().err()?;
    let value = [&tx.0[..], &[0u8], why.to_string().as_bytes()].concat();
    Some((digest_at_key(*height, *index), value))
}

/// A digest row's value for transaction `id`: `None` if the row is another transaction's
/// (left by a commit prepared and dropped, or interrupted by a crash).
fn decode_digest_row(id: &Hash, value: &[u8]) -> Result<Option<TxDigest>, StorageError> {
    let bad = || StorageError::corrupt("digest index", "bad entry");
    let (owner, rest) = value.split_at_checked(32).ok_or_else(bad)?;
    if owner != id.0 {
        return Ok(None);
    }
    match rest.split_first() {
        Some((0, why)) => Ok(Some(TxDigest::Unavailable(
            String::from_utf8_lossy(why).into_owned(),
        ))),
        _ => Err(bad()),
    }
}

fn encode_manifest(live: &[Arc<Segment>]) -> Vec<u8> {
    live.iter().flat_map(|s| s.id.to_be_bytes()).collect()
}

fn decode_manifest(v: &[u8]) -> Result<Vec<u64>, StorageError> {
    if !v.len().is_multiple_of(8) {
        return Err(StorageError::corrupt(
            "metadata",
            format!("segment manifest has {} bytes", v.len()),
        ));
    }
    Ok(v.chunks(8).filter_map(u64_value).collect())
}

/// Largest value written to sled. sled 0.34 does not evict pages holding larger values from
/// its cache (measured: 400 MB of 100 KB values stay resident whatever `cache_capacity`
/// says, while 4 KB values are evicted), so a long-running node's memory would grow with
/// every big block it stores. Blocks, pending blocks, term chunks and segment pages are
/// therefore stored as pieces of at most this size (see docs/PERFORMANCE.md).
pub const MAX_VALUE: usize = 4000;

/// Key of piece `index` of the value stored under `prefix`: the first piece under the
/// prefix itself (so a value that fits in one piece looks exactly like an unsplit one),
/// the others under `prefix ‖ index (u32 BE)`, which sort right after it.
fn piece_key(prefix: &[u8], index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 4);
    k.extend_from_slice(prefix);
    if index > 0 {
        k.extend_from_slice(&index.to_be_bytes());
    }
    k
}

fn piece_count(len: usize) -> u32 {
    len.div_ceil(MAX_VALUE).max(1) as u32
}

fn put_pieces(batch: &mut sled::Batch, prefix: &[u8], bytes: &[u8]) {
    if bytes.is_empty() {
        batch.insert(prefix, &[][..]);
    }
    for (i, piece) in bytes.chunks(MAX_VALUE).enumerate() {
        batch.insert(piece_key(prefix, i as u32), piece);
    }
}

fn remove_pieces(batch: &mut sled::Batch, prefix: &[u8], len: usize) {
    for i in 0..piece_count(len) {
        batch.remove(piece_key(prefix, i));
    }
}

/// The value stored in pieces under `prefix`, reassembled.
fn read_pieces(tree: &sled::Tree, prefix: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
    let Some(first) = tree.get(prefix)? else {
        return Ok(None);
    };
    let mut out = first.to_vec();
    if first.len() >= MAX_VALUE {
        let lo = piece_key(prefix, 1);
        let hi = piece_key(prefix, u32::MAX);
        for kv in tree.range(lo..=hi) {
            out.extend_from_slice(&kv?.1);
        }
    }
    Ok(out.into())
}

/// Values stored in pieces, reassembled in key order: `(prefix, value)` for every value in
/// `iter` whose keys have `prefix_len`-byte prefixes.
pub(crate) struct Reassembled<I: Iterator> {
    iter: std::iter::Peekable<I>,
    prefix_len: usize,
}

pub(crate) fn reassembled<I>(iter: I, prefix_len: usize) -> Reassembled<I>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    Reassembled {
        iter: iter.peekable(),
        prefix_len,
    }
}

impl<I> Iterator for Reassembled<I>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    type Item = Result<(Vec<u8>, Vec<u8>), sled::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = match self.iter.next()? {
            Ok(kv) => kv,
            Err(e) => return Some(Err(e)),
        };
        let prefix = k.get(..self.prefix_len).unwrap_or(&k).to_vec();
        let mut value = v.to_vec();
        while let Some(Ok((next, _))) = self.iter.peek() {
            if next.len() != self.prefix_len + 4 || !next.starts_with(&prefix) {
                break;
            }
            match self.iter.next() {
                Some(Ok((_, piece))) => value.extend_from_slice(&piece),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        Some(Ok((prefix, value)))
    }
}

impl Inner {
    /// The current view; consistent for as long as it is held.
    pub(crate) fn live(&self) -> Live {
        match self.view.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, view: View) {
        let view = Arc::new(view);
        match self.view.write() {
            Ok(mut l) => *l = view,
            Err(p) => *p.into_inner() = view,
        }
    }

    pub(crate) fn load_page<R: Rec>(
        &self,
        seg: &Segment,
        section: u8,
        page: usize,
    ) -> Result<Vec<R>, DatasetError> {
        let corrupt = |what: &str| DatasetError::Corrupt {
            what: "segment",
            detail: format!("segment {} section {section} page {page} {what}", seg.id),
        };
        let key = segment::page_key(seg.id, section, page as u32);
        let v = self
            .segments
            .get(key)?
            .ok_or_else(|| corrupt("is missing"))?;
        R::decode_page(&v).ok_or_else(|| corrupt("does not decode"))
    }

    /// Id of a committed term by its dictionary hash.
    pub(crate) fn term_id_by_hash(
        &self,
        live: &[Arc<Segment>],
        hash: u128,
    ) -> Result<Option<u64>, DatasetError> {
        if let Some(id) = self.dict.id(hash) {
            return Ok(Some(id));
        }
        let bloom = term_bloom_hash(hash);
        let found = segment::find(
            self,
            live,
            SECTION_TERMS,
            TermRec { hash, id: 0 },
            |s| s.term_bloom.may_contain(bloom),
            |r| r.hash == hash,
        )?;
        if let Some(r) = found {
            self.dict.remember_id(hash, r.id);
        }
        Ok(found.map(|r| r.id))
    }

    /// Id of a committed term, `None` if the store has never seen it (or cannot hold it).
    pub(crate) fn term_id<T: Term + ?Sized>(
        &self,
        live: &[Arc<Segment>],
        t: &T,
    ) -> Result<Option<u64>, DatasetError> {
        match encode_term(t) {
            None => Ok(None),
            Some(enc) => self.term_id_by_hash(live, term_hash(&enc)),
        }
    }

    /// The term with id `id`.
    pub(crate) fn term(&self, id: u64) -> Result<StoreTerm, DatasetError> {
        if let Some(t) = self.dict.term(id) {
            return Ok(t);
        }
        let missing = || corrupt_dict(format!("term id {id} is used by a quad but has no entry"));
        let chunk = match id.checked_add(1) {
            Some(next) => self.terms.get_lt(next.to_be_bytes())?,
            None => self.terms.last()?,
        };
        let (k, chunk) = chunk.ok_or_else(missing)?;
        let first = u64_value(&k).filter(|f| *f <= id).ok_or_else(missing)?;
        let index = usize::try_from(id - first).map_err(|_| missing())?;
        let enc = dict::chunk_entry(&chunk, index).ok_or_else(missing)?;
        let t =
            StoreTerm::new(decode_term(enc).map_err(|d| corrupt_dict(format!("term {id}: {d}")))?);
        self.dict.remember_term(id, t.clone());
        Ok(t)
    }

    pub(crate) fn tx_rec(
        &self,
        live: &[Arc<Segment>],
        id: &[u8; 32],
    ) -> Result<Option<TxRec>, DatasetError> {
        let bloom = tx_bloom_hash(id);
        segment::find(
            self,
            live,
            SECTION_TXS,
            TxRec {
                id: *id,
                ..TxRec::MIN
            },
            |s| s.tx_bloom.may_contain(bloom),
            |r| r.id == *id,
        )
    }

    /// Quads of index `section` with keys in `[lo, hi]`, across `live`, ascending.
    pub(crate) fn scan<'s>(
        &'s self,
        live: &[Arc<Segment>],
        section: usize,
        lo: QuadKey,
        hi: QuadKey,
    ) -> Result<MergedScan<'s, QuadKey, Inner>, DatasetError> {
        MergedScan::new(self, live, section as u8, lo, hi)
    }

    /// Whether the quad `[s, p, o, g]` is stored.
    pub(crate) fn contains_quad(
        &self,
        live: &[Arc<Segment>],
        q: &[u64; 4],
    ) -> Result<bool, DatasetError> {
        Ok(self.scan(live, 0, *q, *q)?.next().transpose()?.is_some())
    }
}

impl PageSource for Inner {
    fn page<R: Rec>(
        &self,
        seg: &Segment,
        section: u8,
        page: usize,
    ) -> Result<Arc<Vec<R>>, DatasetError> {
        let id = (seg.id, section, page as u32);
        if let Some(p) = self.pages.get(&id).and_then(|p| R::from_any(&p)) {
            return Ok(p);
        }
        let recs = Arc::new(self.load_page::<R>(seg, section, page)?);
        self.pages.insert(id, R::to_any(recs.clone()));
        Ok(recs)
    }
}

/// Reads pages without filling the cache (merges and integrity checks read everything once).
pub(crate) struct Uncached<'a>(pub(crate) &'a Inner);

impl PageSource for Uncached<'_> {
    fn page<R: Rec>(
        &self,
        seg: &Segment,
        section: u8,
        page: usize,
    ) -> Result<Arc<Vec<R>>, DatasetError> {
        Ok(Arc::new(self.0.load_page::<R>(seg, section, page)?))
    }
}

/// Removes every key of `tree` that starts with `prefix`, [`REMOVE_BATCH_KEYS`] at a time.
fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<(), StorageError> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in tree.scan_prefix(prefix).keys().take(REMOVE_BATCH_KEYS) {
            batch.remove(k?);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        tree.apply_batch(batch)?;
    }
}

/// Hands segment pages or term chunks to sled in batches of about [`BATCH_BYTES`].
struct BatchSink<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    bytes: usize,
}

impl<'a> BatchSink<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        Self {
            tree,
            batch: sled::Batch::default(),
            bytes: 0,
        }
    }
    fn finish(self) -> Result<(), StorageError> {
        self.tree.apply_batch(self.batch)?;
        Ok(())
    }
}

impl PageSink for BatchSink<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DatasetError> {
        self.bytes += key.len() + value.len();
        self.batch.insert(key, value);
        if self.bytes >= BATCH_BYTES {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.bytes = 0;
        }
        Ok(())
    }
}

/// Assigns term ids during a commit: known terms keep theirs, new ones get ids from the
/// counter and are written with the step that first uses them.
struct Interner<'a> {
    inner: &'a Inner,
    live: &'a View,
    /// Terms seen in this commit, by encoding (hashing a short key with the map's hasher is
    /// cheaper than the 128-bit dictionary hash, which is computed once per distinct term).
    local: HashMap<Vec<u8>, u64>,
    next: u64,
    chunk_first: u64,
    new_terms: Vec<Vec<u8>>,
    recs: Vec<TermRec>,
}

impl<'a> Interner<'a> {
    fn new(inner: &'a Inner, live: &'a View) -> Self {
        let next = live.next_term_id;
        Self {
            inner,
            live,
            local: HashMap::new(),
            next,
            chunk_first: next,
            new_terms: Vec::new(),
            recs: Vec::new(),
        }
    }

    fn intern<T: Term + ?Sized>(&mut self, t: &T) -> Result<u64, StorageError> {
        let enc = encode_term(t).ok_or_else(|| {
            StorageError::corrupt("transaction data", "a term the store cannot hold")
        })?;
        if let Some(&id) = self.local.get(&enc) {
            return Ok(id);
        }
        let hash = term_hash(&enc);
        let id = match self.inner.term_id_by_hash(self.live, hash)? {
            Some(id) => id,
            None => {
                let id = self.next;
                self.next = id.checked_add(1).ok_or(StorageError::TermIdsExhausted)?;
                self.new_terms.push(enc.clone());
                self.recs.push(TermRec { hash, id });
                id
            }
        };
        self.local.insert(enc, id);
        Ok(id)
    }

    /// The new terms since the last call: the chunks to write (of about [`MAX_VALUE`]
    /// bytes each, keyed by their first id), and their hash records.
    fn take_new(&mut self) -> (Vec<(u64, Vec<u8>)>, Vec<TermRec>) {
        let mut chunks = Vec::new();
        let mut first = self.chunk_first;
        let mut start = 0;
        let mut bytes = 0;
        for (k, t) in self.new_terms.iter().enumerate() {
            if k > start && bytes + t.len() + 4 > MAX_VALUE {
                chunks.push((first, dict::encode_chunk(&self.new_terms[start..k])));
                first += (k - start) as u64;
                start = k;
                bytes = 0;
            }
            bytes += t.len() + 4;
        }
        if start < self.new_terms.len() {
            chunks.push((first, dict::encode_chunk(&self.new_terms[start..])));
        }
        self.new_terms.clear();
        self.chunk_first = self.next;
        (chunks, std::mem::take(&mut self.recs))
    }
}

/// One atomic step of a commit: whole blocks and the segment holding their quads.
#[derive(Default)]
struct Step {
    data: SegmentData,
    chunks: Vec<(u64, Vec<u8>)>,
    /// Height, hash and encoding of each block.
    blocks: Vec<(u64, Hash, Vec<u8>)>,
    stats: CommitStats,
    data_triples: u64,
    next_term_id: u64,
    head: Option<BlockHeader>,
    /// Each transaction's id, height, index and canonical digest.
    digests: Vec<DigestEntry>,
    /// Heights of blocks carrying governance items.
    governance_heights: Vec<u64>,
}

/// RFC 3339 UTC timestamp with milliseconds from Unix milliseconds.
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

fn int(n: u64) -> OwnedTerm {
    typed_literal(n.to_string(), XSD_INTEGER)
}

fn date_time(ms: u64) -> OwnedTerm {
    typed_literal(rfc3339(ms), XSD_DATE_TIME)
}

/// Chain metadata statements for one block (see the crate docs for the vocabulary).
fn block_metadata(block: &Block, b: &OwnedTerm) -> Vec<[OwnedTerm; 3]> {
    let h = &block.header;
    let mut out = vec![
        [b.clone(), iri(vocab::RDF_TYPE), iri(vocab::PC_BLOCK)],
        [b.clone(), iri(vocab::PC_HEIGHT), int(h.height)],
    ];
    if h.height > 0 {
        out.push([
            b.clone(),
            iri(vocab::PC_PARENT),
            iri(vocab::block_iri(&h.parent_hash)),
        ]);
        out.push([
            b.clone(),
            iri(vocab::PC_PROPOSER),
            iri(vocab::node_iri(&h.proposer)),
        ]);
        out.push([b.clone(), iri(vocab::PC_SLOT), int(h.slot)]);
        out.push([
            b.clone(),
            iri(vocab::PROV_GENERATED_AT_TIME),
            date_time(h.timestamp_ms),
        ]);
    }
    for item in &block.governance {
        out.extend(governance_metadata(item, b));
    }
    out
}

/// Chain metadata statements for one governance item: a PROV-O activity associated with the
/// authority that signed it.
fn governance_metadata(item: &GovernanceItem, block: &OwnedTerm) -> Vec<[OwnedTerm; 3]> {
    match item {
        GovernanceItem::Proposal(p) => {
            let t = iri(vocab::proposal_iri(&p.id()));
            let (action, key) = match p.action {
                GovernanceAction::Add(k) => ("add", k),
                GovernanceAction::Remove(k) => ("remove", k),
            };
            vec![
                [t.clone(), iri(vocab::RDF_TYPE), iri(vocab::PROV_ACTIVITY)],
                [
                    t.clone(),
                    iri(vocab::RDF_TYPE),
                    iri(vocab::PC_AUTHORITY_PROPOSAL),
                ],
                [t.clone(), iri(vocab::PC_ACTION), string_literal(action)],
                [
                    t.clone(),
                    iri(vocab::PC_AUTHORITY),
                    iri(vocab::node_iri(&key)),
                ],
                [
                    t.clone(),
                    iri(vocab::PROV_WAS_ASSOCIATED_WITH),
                    iri(vocab::node_iri(&p.proposer)),
                ],
                [t, iri(vocab::PC_IN_BLOCK), block.clone()],
            ]
        }
        GovernanceItem::Vote(v) => {
            let t = iri(vocab::vote_iri(&item.id()));
            vec![
                [t.clone(), iri(vocab::RDF_TYPE), iri(vocab::PROV_ACTIVITY)],
                [
                    t.clone(),
                    iri(vocab::RDF_TYPE),
                    iri(vocab::PC_AUTHORITY_VOTE),
                ],
                [
                    t.clone(),
                    iri(vocab::PC_PROPOSAL),
                    iri(vocab::proposal_iri(&v.proposal)),
                ],
                [
                    t.clone(),
                    iri(vocab::PROV_WAS_ASSOCIATED_WITH),
                    iri(vocab::node_iri(&v.voter)),
                ],
                [t, iri(vocab::PC_IN_BLOCK), block.clone()],
            ]
        }
    }
}

/// Chain metadata statements for one transaction.
fn tx_metadata(
    block: &OwnedTerm,
    tx: &Transaction,
    t: &OwnedTerm,
    index: u32,
    triples: u64,
    named_graphs: &[OwnedTerm],
) -> Vec<[OwnedTerm; 3]> {
    let mut out = vec![
        [t.clone(), iri(vocab::RDF_TYPE), iri(vocab::PROV_ENTITY)],
        [
            t.clone(),
            iri(vocab::PROV_WAS_ATTRIBUTED_TO),
            iri(vocab::node_iri(&tx.body.submitter)),
        ],
        [
            t.clone(),
            iri(vocab::PROV_GENERATED_AT_TIME),
            date_time(tx.body.timestamp_ms),
        ],
        [t.clone(), iri(vocab::PC_IN_BLOCK), block.clone()],
        [t.clone(), iri(vocab::PC_INDEX), int(u64::from(index))],
        [t.clone(), iri(vocab::PC_TRIPLE_COUNT), int(triples)],
        [
            t.clone(),
            iri(vocab::PC_FORMAT),
            string_literal(tx.body.format.name()),
        ],
    ];
    if let Some(c) = &tx.body.client {
        out.push([t.clone(), iri(vocab::PC_CLIENT), string_literal(c.clone())]);
    }
    for g in named_graphs {
        out.push([t.clone(), iri(vocab::PC_NAMED_GRAPH), g.clone()]);
    }
    out
}

/// Parses a transaction's document in its scope and deduplicates it: the statements the
/// store holds for it. Integrity validation uses it to check what commit stored.
pub(crate) fn tx_quads(tx: &Transaction, id: &Hash) -> Result<Vec<OwnedQuad>, rdf::RdfError> {
    let mut quads = rdf::parse(tx.body.format, &tx.body.data, &id.to_hex())?;
    rdf::dedup_quads(&mut quads);
    Ok(quads)
}

/// Opens a sled database, waiting up to a second for the file lock: sled's I/O threads can
/// hold a just-closed database for a few milliseconds after its last handle is dropped, and
/// reopening in that window (a restart in the same process, a tool right after the node)
/// would otherwise fail.
pub(crate) fn open_sled(config: sled::Config) -> Result<sled::Db, sled::Error> {
    let mut tries = 0;
    loop {
        match config.open() {
            Err(e) if tries < 50 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

impl Store {
    /// Opens (creating on first use) the database in `dir` for the network `genesis`.
    /// On first open the genesis block is committed at height 0; later opens check the
    /// stored genesis and the tip, without replaying anything.
    pub fn open(dir: &Path, genesis: &Genesis) -> Result<Store, StorageError> {
        Self::open_with_cache(dir, genesis, 64 * 1024 * 1024)
    }

    /// Opens an existing database for whatever network it belongs to, reading the genesis from
    /// its metadata (offline tools such as `provchain verify`). Refuses a missing database.
    pub fn open_existing(dir: &Path) -> Result<Store, StorageError> {
        if !dir.join("conf").exists() && !dir.join("db").exists() {
            return Err(StorageError::Corrupt {
                what: "database".into(),
                detail: format!("no ProvChain database at {}", dir.display()),
            });
        }
        let genesis = {
            let db = open_sled(sled::Config::new().path(dir))?;
            let bytes =
                db.open_tree("meta")?
                    .get(META_GENESIS)?
                    .ok_or_else(|| StorageError::Corrupt {
                        what: "metadata".into(),
                        detail: "the genesis record is missing".into(),
                    })?;
            Genesis::decode(&bytes).map_err(|e| StorageError::Corrupt {
                what: "genesis".into(),
                detail: e.to_string(),
            })?
        };
        Self::open(dir, &genesis)
    }

    /// As [`Store::open`] with the memory for caches bounded to about `cache_bytes`
    /// (`storage.cache_size_mb`): half for sled's page cache, half for decoded segment pages.
    pub fn open_with_cache(
        dir: &Path,
        genesis: &Genesis,
        cache_bytes: u64,
    ) -> Result<Store, StorageError> {
        let db = open_sled(
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes / 2),
        )?;
        let t = |name: &str| db.open_tree(name);
        let genesis_hash = genesis.hash();
        let inner = Inner {
            blocks: t("blocks")?,
            block_index: t("block_index")?,
            pending: t("pending")?,
            meta: t("meta")?,
            terms: t("terms")?,
            segments: t("segments")?,
            digests: t("digests")?,
            digests_from: AtomicU64::new(0),
            view: RwLock::new(Arc::new(View {
                head: genesis.block().header,
                triples: 0,
                data_triples: 0,
                next_term_id: 1,
                segments: Vec::new(),
            })),
            graveyard: Mutex::new(Vec::new()),
            merging: std::sync::atomic::AtomicBool::new(false),
            pages: PageCache::new(usize::try_from(cache_bytes / 2).unwrap_or(usize::MAX)),
            dict: TermCaches::default(),
            genesis: genesis.clone(),
            genesis_hash,
            next_segment_id: AtomicU64::new(1),
            write_lock: Mutex::new(None),
            db,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        match store.inner.meta.get(META_SCHEMA)? {
            None => store.initialise()?,
            Some(v) => store.check_existing(&v)?,
        }
        Ok(store)
    }

    fn initialise(&self) -> Result<(), StorageError> {
        let i = &self.inner;
        if !i.blocks.is_empty() {
            return Err(StorageError::corrupt(
                "metadata",
                "blocks exist but the schema version is missing",
            ));
        }
        // Leftovers of a first start that crashed before its commit point.
        i.segments.clear()?;
        i.terms.clear()?;
        let genesis_block = i.genesis.block();
        let mut extra = sled::Batch::default();
        extra.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes());
        extra.insert(META_GENESIS, i.genesis.encode());
        extra.insert(META_GENESIS_HASH, &i.genesis_hash.0);
        extra.insert(META_DIGESTS_FROM, &0u64.to_be_bytes());
        i.digests.clear()?;
        let live = i.live();
        for step in self.plan(&[genesis_block], &HashMap::new(), &live)? {
            self.apply_step(step, Some(&extra))?;
        }
        tracing::info!(genesis = %i.genesis_hash, "created a new chain database");
        Ok(())
    }

    fn check_existing(&self, schema: &[u8]) -> Result<(), StorageError> {
        let i = &self.inner;
        let found = <[u8; 4]>::try_from(schema)
            .map(u32::from_be_bytes)
            .map_err(|_| StorageError::corrupt("metadata", "schema version is not 4 bytes"))?;
        if found != SCHEMA_VERSION {
            return Err(StorageError::UnsupportedSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let stored = i
            .meta
            .get(META_GENESIS_HASH)?
            .ok_or_else(|| StorageError::corrupt("metadata", "genesis hash is missing"))?;
        let stored = hash_value(&stored, "stored genesis hash")?;
        if stored != i.genesis_hash {
            return Err(StorageError::GenesisMismatch {
                stored,
                configured: i.genesis_hash,
            });
        }
        let height = be_u64(i.meta.get(META_FINAL_HEIGHT)?, "final head height")?;
        let hash = i
            .meta
            .get(META_FINAL_HASH)?
            .ok_or_else(|| StorageError::corrupt("metadata", "final head hash is missing"))?;
        let hash = hash_value(&hash, "final head hash")?;
        let header = self.header_by_height(height)?.ok_or_else(|| {
            StorageError::corrupt("chain", format!("final head block {height} is missing"))
        })?;
        if header.hash() != hash || header.height != height {
            return Err(StorageError::corrupt(
                "chain",
                format!("block at the final head height {height} is not the recorded head {hash}"),
            ));
        }
        if i.blocks
            .last()?
            .is_some_and(|(k, _)| k.get(..8) != Some(&height.to_be_bytes()[..]))
        {
            return Err(StorageError::corrupt(
                "chain",
                "blocks exist above the final head",
            ));
        }
        let next_term = be_u64(i.meta.get(META_NEXT_TERM)?, "next term id")?;
        let next_segment = be_u64(i.meta.get(META_NEXT_SEGMENT)?, "next segment id")?;
        let manifest =
            decode_manifest(&i.meta.get(META_SEGMENTS)?.ok_or_else(|| {
                StorageError::corrupt("metadata", "segment manifest is missing")
            })?)?;
        self.repair(&manifest, next_term)?;
        let mut live = Vec::with_capacity(manifest.len());
        for id in manifest {
            let v = i.segments.get(segment::header_key(id))?.ok_or_else(|| {
                StorageError::corrupt("dataset", format!("segment {id} is missing"))
            })?;
            let seg = Segment::decode(&v)?;
            if seg.id != id {
                return Err(StorageError::corrupt(
                    "dataset",
                    format!("segment {id} has the header of segment {}", seg.id),
                ));
            }
            live.push(Arc::new(seg));
        }
        i.next_segment_id.store(next_segment, Ordering::SeqCst);
        i.publish(View {
            head: header,
            triples: be_u64(i.meta.get(META_TRIPLES)?, "triple count")?,
            data_triples: be_u64(i.meta.get(META_DATA_TRIPLES)?, "data triple count")?,
            next_term_id: next_term,
            segments: live,
        });
        let digests_from = match i.meta.get(META_DIGESTS_FROM)? {
            Some(v) => be_u64(Some(v), "digest index start")?,
            None => {
                let from = height + 1;
                i.meta.insert(META_DIGESTS_FROM, &from.to_be_bytes())?;
                i.db.flush()?;
                tracing::warn!(
                    from,
                    "this database predates the canonical digest index; transactions below \
                     height {from} have no digest"
                );
                from
            }
        };
        i.digests_from.store(digests_from, Ordering::SeqCst);
        tracing::info!(height, head = %hash, "opened chain database");
        Ok(())
    }

    /// Deletes what a crash left unreferenced: segments not in the manifest (written before
    /// their commit point, or merged away before their pages were deleted) and term chunks
    /// at or above the recorded next term id. Visits one key per segment, not the data.
    fn repair(&self, manifest: &[u64], next_term: u64) -> Result<(), StorageError> {
        let i = &self.inner;
        let live: HashSet<u64> = manifest.iter().copied().collect();
        let mut from = 0u64;
        let mut removed = 0usize;
        loop {
            let Some((k, _)) = i.segments.range(from.to_be_bytes()..).next().transpose()? else {
                break;
            };
            let Some(id) = segment::key_segment(&k) else {
                i.segments.remove(k)?;
                continue;
            };
            if !live.contains(&id) {
                remove_prefix(&i.segments, &id.to_be_bytes())?;
                removed += 1;
            }
            match id.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        let mut stale = sled::Batch::default();
        let mut chunks = 0usize;
        for k in i.terms.range(next_term.to_be_bytes()..).keys() {
            stale.remove(k?);
            chunks += 1;
        }
        i.terms.apply_batch(stale)?;
        if removed + chunks > 0 {
            tracing::info!(
                segments = removed,
                term_chunks = chunks,
                "removed data of an interrupted commit or merge"
            );
            i.db.flush()?;
        }
        Ok(())
    }

    pub fn genesis(&self) -> &Genesis {
        &self.inner.genesis
    }

    pub fn genesis_hash(&self) -> Hash {
        self.inner.genesis_hash
    }

    /// Header of the highest final block (the genesis block's at height 0).
    pub fn final_head(&self) -> Result<BlockHeader, StorageError> {
        Ok(self.inner.live().head.clone())
    }

    pub fn block_by_height(&self, h: u64) -> Result<Option<Block>, StorageError> {
        match read_pieces(&self.inner.blocks, &h.to_be_bytes())? {
            None => Ok(None),
            Some(v) => Block::decode(&v)
                .map(Some)
                .map_err(|e| StorageError::corrupt(format!("block {h}"), e)),
        }
    }

    /// Header only, without decoding the transactions (it is in the first piece).
    pub fn header_by_height(&self, h: u64) -> Result<Option<BlockHeader>, StorageError> {
        match self.inner.blocks.get(h.to_be_bytes())? {
            None => Ok(None),
            Some(v) => BlockHeader::decode_from(&mut Reader::new(&v))
                .map(Some)
                .map_err(|e| StorageError::corrupt(format!("block {h}"), e)),
        }
    }

    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StorageError> {
        match self.inner.block_index.get(hash.0)? {
            None => Ok(None),
            Some(v) => u64_value(&v).map(Some).ok_or_else(|| {
                StorageError::corrupt("block index", format!("entry for {hash} is malformed"))
            }),
        }
    }

    /// A final block by hash.
    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, StorageError> {
        match self.height_of(hash)? {
            None => Ok(None),
            Some(h) => self.block_by_height(h),
        }
    }

    /// Up to `limit` final blocks from height `from`, ascending.
    pub fn blocks_range(&self, from: u64, limit: usize) -> Result<Vec<Block>, StorageError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for kv in reassembled(self.inner.blocks.range(from.to_be_bytes()..), 8).take(limit) {
            let (k, v) = kv?;
            let h = u64_value(&k).unwrap_or(u64::MAX);
            out.push(
                Block::decode(&v).map_err(|e| StorageError::corrupt(format!("block {h}"), e))?,
            );
        }
        Ok(out)
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<TxLocation>, StorageError> {
        let live = self.inner.live();
        Ok(self.inner.tx_rec(&live, &id.0)?.map(|r| TxLocation::of(&r)))
    }

    /// Which of `ids` are final, looked up in one view of the store, and the final height of
    /// that view: every transaction of a block at or below it was found. A caller that
    /// remembers the transactions of the blocks committed since needs no second lookup.
    pub fn final_txs(&self, ids: &[Hash]) -> Result<(u64, Vec<bool>), StorageError> {
        let live = self.inner.live();
        let found = ids
            .iter()
            .map(|id| Ok(self.inner.tx_rec(&live, &id.0)?.is_some()))
            .collect::<Result<_, StorageError>>()?;
        Ok((live.head.height, found))
    }

    /// The canonical digest of a final transaction's document: `None` when the transaction is
    /// not final here or was committed before this database had a digest index.
    pub fn tx_digest(&self, id: &Hash) -> Result<Option<TxDigest>, StorageError> {
        let live = self.inner.live();
        let Some(loc) = self.inner.tx_rec(&live, &id.0)? else {
            return Ok(None);
        };
        if loc.height < self.digests_from() {
            return Ok(None);
        }
        let hash = tx_bloom_hash(&id.0);
        if let Some(rec) = segment::find(
            &*self.inner,
            &live.segments,
            SECTION_TX_DIGESTS,
            TxDigestRec {
                id: id.0,
                ..TxDigestRec::MIN
            },
            |s| s.tx_bloom.may_contain(hash),
            |r| r.id == id.0,
        )? {
            return Ok(Some(TxDigest::Sha256(rec.digest)));
        }
        // No digest: why, from the row by position. Rows are written ahead of their
        // transaction's commit point (`write_step`): only the final transaction's position
        // is read, and the row must name it.
        if let Some(v) = self
            .inner
            .digests
            .get(digest_at_key(loc.height, loc.index))?
            && let Some(d) = decode_digest_row(id, &v)?
        {
            return Ok(Some(d));
        }
        let legacy = [&[LEGACY_DIGEST_BY_TX][..], &id.0].concat();
        Ok(self
            .inner
            .digests
            .get(legacy)?
            .map(|v| match <[u8; 32]>::try_from(&v[..]) {
                Ok(d) => TxDigest::Sha256(d),
                Err(_) => TxDigest::Unavailable(
                    String::from_utf8_lossy(v.get(1..).unwrap_or(&[])).into_owned(),
                ),
            }))
    }

    /// Final transactions whose documents have canonical digest `digest`, oldest first, at
    /// most `limit`.
    pub fn transactions_by_digest(
        &self,
        digest: &CanonicalDigest,
        limit: usize,
    ) -> Result<Vec<(Hash, TxLocation)>, StorageError> {
        let mut out = Vec::new();
        // One view of the store for both parts, so no commit lands between them.
        let live = self.inner.live();
        // Rows of transactions committed before the digest sections existed: all older.
        let prefix = [&[LEGACY_DIGEST_BY_VALUE][..], digest].concat();
        for entry in self.inner.digests.scan_prefix(&prefix) {
            if out.len() >= limit {
                return Ok(out);
            }
            let (key, value) = entry?;
            let id = hash_value(&value, "digest index entry")?;
            let at = &key[prefix.len()..];
            let (Some(height), Some(index)) = (
                at.get(..8).and_then(u64_value),
                at.get(8..12)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes),
            ) else {
                return Err(StorageError::corrupt("digest index", "bad key"));
            };
            // Those rows were written ahead of their commit point: one whose transaction is
            // not final there (a commit prepared and dropped, or interrupted by a crash) is
            // not listed.
            match self.inner.tx_rec(&live, &id.0)? {
                Some(tx) if tx.height == height && tx.index == index => {
                    out.push((id, TxLocation::of(&tx)));
                }
                _ => {}
            }
        }
        // The digest sections of the live segments: final by construction, oldest first.
        let segs: Vec<Arc<Segment>> = live
            .segments
            .iter()
            .filter(|s| s.may_hold_digest(digest))
            .cloned()
            .collect();
        let lo = DigestRec {
            digest: *digest,
            ..DigestRec::MIN
        };
        let hi = DigestRec {
            digest: *digest,
            height: u64::MAX,
            index: u32::MAX,
            id: [0xff; 32],
        };
        let from = self.digests_from();
        for rec in MergedScan::new(&*self.inner, &segs, SECTION_DIGESTS, lo, hi)? {
            if out.len() >= limit {
                break;
            }
            let rec = rec?;
            if rec.height < from {
                // Below the index's start `tx_digest` knows no digest; neither does this.
                continue;
            }
            let Some(tx) = self.inner.tx_rec(&live, &rec.id)? else {
                return Err(StorageError::corrupt(
                    "digest index",
                    "a digest record names a transaction that is not final",
                ));
            };
            out.push((Hash(rec.id), TxLocation::of(&tx)));
        }
        Ok(out)
    }

    /// Heights of the final blocks that carry governance items, ascending.
    pub fn governance_heights(&self) -> Result<Vec<u64>, StorageError> {
        let mut out = Vec::new();
        for kv in self.inner.meta.scan_prefix(META_GOVERNANCE_HEIGHT) {
            let (k, _) = kv?;
            let raw: [u8; 8] = k[META_GOVERNANCE_HEIGHT.len()..]
                .try_into()
                .map_err(|_| StorageError::corrupt("governance index", "bad key"))?;
            out.push(u64::from_be_bytes(raw));
        }
        Ok(out)
    }

    /// First height whose transactions are in the digest index.
    pub fn digests_from(&self) -> u64 {
        self.inner.digests_from.load(Ordering::SeqCst)
    }

    pub fn transaction(
        &self,
        id: &Hash,
    ) -> Result<Option<(Transaction, TxLocation)>, StorageError> {
        let Some(loc) = self.tx_location(id)? else {
            return Ok(None);
        };
        let block = self.block_by_height(loc.height)?.ok_or_else(|| {
            StorageError::corrupt("transaction index", format!("{id} points at missing block"))
        })?;
        let tx = block
            .transactions
            .into_iter()
            .nth(loc.index as usize)
            .ok_or_else(|| {
                StorageError::corrupt("transaction index", format!("{id} points past the block"))
            })?;
        Ok(Some((tx, loc)))
    }

    /// Appends final blocks, which must be exactly the next heights on the final head, and
    /// applies their RDF: atomically (see the module docs), then flushed. On any error nothing
    /// is written. Committed blocks are also removed from the pending store.
    pub fn commit_final(&self, blocks: &[Block]) -> Result<CommitStats, StorageError> {
        self.commit_final_parsed(blocks, &HashMap::new())
    }

    /// [`Self::commit_final`], taking the RDF of the transactions in `parsed` (by id) as
    /// parsed already, by [`ParsedTx::parse`] of that transaction; the rest is parsed here.
    /// A node parses each transaction when it admits it, ahead of the block's finality, and
    /// so keeps parsing off the commit.
    pub fn commit_final_parsed(
        &self,
        blocks: &[Block],
        parsed: &HashMap<Hash, Arc<ParsedTx>>,
    ) -> Result<CommitStats, StorageError> {
        let mut w = self.writer()?;
        let live = self.inner.live();
        let linked = extends(&live.head, blocks);
        let prepared = match (w.take(), &linked) {
            (Some(p), Ok(hashes)) if p.is_for(&live, hashes) => Some(p),
            (Some(p), _) => {
                // Prepared for other blocks (a fork that lost) or on another head: its
                // unreferenced writes go before any other commit writes chunks under the same
                // ids, including one refused here.
                self.discard(p.steps);
                None
            }
            (None, _) => None,
        };
        linked?;
        if blocks.is_empty() {
            return Ok(CommitStats::default());
        }
        let mut stats = CommitStats {
            prepared: prepared.is_some(),
            ..CommitStats::default()
        };
        let steps = match prepared {
            Some(p) => p.steps,
            None => {
                let planned = self.plan(blocks, parsed, &live)?;
                self.write_steps(planned)?
            }
        };
        drop(live);
        for step in steps {
            let s = step.stats;
            self.commit_step(step, None)?;
            stats.blocks += s.blocks;
            stats.transactions += s.transactions;
            stats.triples += s.triples;
        }
        let many = self.inner.live().len() > SYNC_MERGE_SEGMENTS;
        drop(w);
        if many && let Err(e) = self.merge_segments() {
            // The commit itself is durable; a failed merge leaves more segments, no damage.
            tracing::warn!(error = %e, "segment merge failed");
        }
        Ok(stats)
    }

    /// Prepares the commit of `blocks`, which extend the final head, ahead of their finality:
    /// plans it (parsing what `parsed` lacks, interning every term, gathering quads,
    /// transaction records and digests) and writes and flushes its segments, term chunks and
    /// digest rows, unreferenced. The next [`Self::commit_final_parsed`] of exactly these blocks on the
    /// store as it is now only writes its commit point; any other commit first deletes what
    /// was prepared, as does the next preparation, and [`Store::open`] after a crash. Returns
    /// false, preparing nothing, if the blocks do not extend the final head. An error is one
    /// committing them would report (a duplicate transaction, invalid RDF); nothing is left
    /// prepared then.
    ///
    /// A node prepares the commit of a block while it waits a slot for finality; for a large
    /// block that is most of the commit's work (`docs/PERFORMANCE.md`).
    pub fn prepare_commit(
        &self,
        blocks: &[Block],
        parsed: &HashMap<Hash, Arc<ParsedTx>>,
    ) -> Result<bool, StorageError> {
        let mut w = self.writer()?;
        let live = self.inner.live();
        let Ok(hashes) = extends(&live.head, blocks) else {
            return Ok(false);
        };
        if w.as_ref().is_some_and(|p| p.is_for(&live, &hashes)) {
            return Ok(true);
        }
        if let Some(p) = w.take() {
            self.discard(p.steps);
        }
        if blocks.is_empty() {
            return Ok(false);
        }
        let planned = self.plan(blocks, parsed, &live)?;
        let steps = self.write_steps(planned)?;
        *w = Some(Prepared {
            base: (live.head.hash(), live.next_term_id),
            blocks: hashes,
            steps,
        });
        Ok(true)
    }

    /// The writer lock. After a writer panicked holding it (a bug), term chunks it wrote may be
    /// left that would shadow the ids of the next commit: the store refuses to write again
    /// until it is reopened, which deletes them.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Option<Prepared>>, StorageError> {
        self.inner
            .write_lock
            .lock()
            .map_err(|_| StorageError::corrupt("memory", "writer lock poisoned"))
    }

    /// Deletes the unreferenced writes of steps that will not be committed. Best effort: what
    /// is left is deleted at the next open.
    fn discard(&self, steps: Vec<WrittenStep>) {
        let i = &self.inner;
        for step in steps {
            let mut gone = remove_prefix(&i.segments, &step.seg.id.to_be_bytes());
            let mut stale = sled::Batch::default();
            for first in step.chunks {
                stale.remove(&first.to_be_bytes());
            }
            gone = gone.and(i.terms.apply_batch(stale).map_err(StorageError::from));
            let mut rows = sled::Batch::default();
            for (k, _) in step.digests.iter().filter_map(digest_row) {
                rows.remove(k);
            }
            gone = gone.and(i.digests.apply_batch(rows).map_err(StorageError::from));
            if let Err(e) = gone {
                tracing::warn!(error = %e, "cannot delete the writes of an unused prepared commit");
            }
        }
    }

    /// Parses and interns every transaction and gathers each step's writes. Reads only.
    fn plan(
        &self,
        blocks: &[Block],
        parsed: &HashMap<Hash, Arc<ParsedTx>>,
        live: &View,
    ) -> Result<Vec<Step>, StorageError> {
        let i = &self.inner;
        let mut it = Interner::new(i, live);
        let chain_graph = iri(vocab::CHAIN_GRAPH);
        let mut seen_tx = HashSet::new();
        let mut seen_named: HashSet<[u64; 4]> = HashSet::new();
        let mut steps = Vec::new();
        let mut cur = Step::default();
        let mut data_total = live.data_triples;
        let finish = |cur: &mut Step, it: &mut Interner<'_>| {
            let (chunks, recs) = it.take_new();
            cur.chunks = chunks;
            cur.data.terms = recs;
            cur.next_term_id = it.next;
            std::mem::take(cur)
        };
        for block in blocks {
            if cur.data.quads.len() >= MAX_QUADS_PER_STEP {
                steps.push(finish(&mut cur, &mut it));
            }
            let hash = block.hash();
            let height = block.header.height;
            cur.blocks.push((height, hash, block.encode()));
            if !block.governance.is_empty() {
                cur.governance_heights.push(height);
            }
            cur.stats.blocks += 1;
            let cg = it.intern(&chain_graph)?;
            let block_iri = iri(vocab::block_iri(&hash));
            for [s, p, o] in block_metadata(block, &block_iri) {
                let q = [it.intern(&s)?, it.intern(&p)?, it.intern(&o)?, cg];
                cur.data.quads.push(q);
            }
            for (index, tx) in block.transactions.iter().enumerate() {
                let index = index as u32;
                let id = tx.id();
                if !seen_tx.insert(id) || i.tx_rec(live, &id.0)?.is_some() {
                    return Err(StorageError::DuplicateTransaction { tx: id, height });
                }
                let here;
                let tx_parsed = match parsed.get(&id) {
                    Some(p) => p.as_ref(),
                    None => {
                        here =
                            ParsedTx::parse(&id, tx).map_err(|error| StorageError::InvalidRdf {
                                tx: id,
                                height,
                                error,
                            })?;
                        &here
                    }
                };
                let tx_term = iri(vocab::tx_iri(&id));
                let txg = it.intern(&tx_term)?;
                let mut named: Vec<(u64, OwnedTerm)> = Vec::new();
                let mut quads: Vec<[u64; 4]> = Vec::with_capacity(tx_parsed.quads.len());
                for ([s, p, o], g) in &tx_parsed.quads {
                    let gid = match g {
                        None => txg,
                        Some(g) => {
                            let gid = it.intern(g)?;
                            if !named.iter().any(|(n, _)| *n == gid) {
                                named.push((gid, g.clone()));
                            }
                            gid
                        }
                    };
                    quads.push([it.intern(s)?, it.intern(p)?, it.intern(o)?, gid]);
                }
                // Distinct statements (equal terms have equal ids).
                quads.sort_unstable();
                quads.dedup();
                let n = quads.len() as u64;
                for q in quads {
                    if q[3] != txg {
                        // A shared named graph: the quad may be stored already or come twice.
                        if !seen_named.insert(q) || i.contains_quad(live, &q)? {
                            continue;
                        }
                    }
                    cur.data.quads.push(q);
                    data_total += 1;
                }
                let named: Vec<OwnedTerm> = named.into_iter().map(|(_, g)| g).collect();
                for [s, p, o] in tx_metadata(&block_iri, tx, &tx_term, index, n, &named) {
                    let q = [it.intern(&s)?, it.intern(&p)?, it.intern(&o)?, cg];
                    cur.data.quads.push(q);
                }
                if let Ok(d) = &tx_parsed.digest {
                    cur.data.digests.push(DigestRec {
                        digest: *d,
                        height,
                        index,
                        id: id.0,
                    });
                    cur.data.tx_digests.push(TxDigestRec {
                        id: id.0,
                        digest: *d,
                    });
                }
                cur.digests
                    .push((id, height, index, tx_parsed.digest.clone()));
                cur.data.txs.push(TxRec {
                    id: id.0,
                    height,
                    index,
                    triples: n,
                });
                cur.stats.transactions += 1;
            }
            cur.stats.triples = cur.data.quads.len() as u64;
            cur.data_triples = data_total;
            cur.head = Some(block.header.clone());
        }
        steps.push(finish(&mut cur, &mut it));
        Ok(steps)
    }

    /// Protocol step 1 for planned steps: writes each step's segment, term chunks and digest
    /// rows, then flushes. If a write fails, what was written is deleted (or left to the next
    /// open).
    fn write_steps(&self, steps: Vec<Step>) -> Result<Vec<WrittenStep>, StorageError> {
        let mut written = Vec::with_capacity(steps.len());
        let result = steps
            .into_iter()
            .try_for_each(|step| {
                written.extend(self.write_step(step)?);
                Ok(())
            })
            .and_then(|()| Ok(self.inner.db.flush().map(drop)?));
        match result {
            Ok(()) => Ok(written),
            Err(e) => {
                self.discard(written);
                Err(e)
            }
        }
    }

    /// Writes one step's segment, term chunks and digest rows, unreferenced (not flushed).
    /// `None` for a step without blocks. On error what it wrote is deleted (or, if the
    /// database fails that too, at the next open).
    fn write_step(&self, step: Step) -> Result<Option<WrittenStep>, StorageError> {
        let i = &self.inner;
        let Some(head) = step.head else {
            return Ok(None);
        };
        let seg_id = i.next_segment_id.fetch_add(1, Ordering::SeqCst);
        let mut sink = BatchSink::new(&i.segments);
        let built = segment::build(seg_id, step.data, &mut sink)
            .map_err(StorageError::from)
            .and_then(|seg| sink.finish().map(|()| seg));
        let seg = match built {
            Ok(seg) => seg,
            Err(e) => {
                let _ = remove_prefix(&i.segments, &seg_id.to_be_bytes());
                return Err(e);
            }
        };
        let written = WrittenStep {
            seg,
            chunks: step.chunks.iter().map(|(first, _)| *first).collect(),
            blocks: step.blocks,
            stats: step.stats,
            data_triples: step.data_triples,
            next_term_id: step.next_term_id,
            head,
            digests: step.digests,
            governance_heights: step.governance_heights,
        };
        match self.write_rows(step.chunks, &written.digests) {
            Ok(()) => Ok(Some(written)),
            Err(e) => {
                self.discard(vec![written]);
                Err(e)
            }
        }
    }

    /// Writes term chunks and digest rows. Chunks above the manifest's next term id are stale
    /// until their step commits (and removed at open if it never does), and digest rows of
    /// transactions that are not final are not read (`tx_digest`, `transactions_by_digest`):
    /// neither needs atomicity with the commit point.
    fn write_rows(
        &self,
        chunks: Vec<(u64, Vec<u8>)>,
        digests: &[DigestEntry],
    ) -> Result<(), StorageError> {
        let i = &self.inner;
        let mut terms = BatchSink::new(&i.terms);
        for (first, chunk) in chunks {
            terms.put(first.to_be_bytes().to_vec(), chunk)?;
        }
        terms.finish()?;
        let mut rows = BatchSink::new(&i.digests);
        for (k, v) in digests.iter().filter_map(digest_row) {
            rows.put(k, v)?;
        }
        rows.finish()
    }

    /// Writes one step: segment, terms and digest rows, flush; then its commit point
    /// ([`Self::commit_step`]).
    fn apply_step(&self, step: Step, extra_meta: Option<&sled::Batch>) -> Result<(), StorageError> {
        for w in self.write_steps(vec![step])? {
            self.commit_step(w, extra_meta)?;
        }
        Ok(())
    }

    /// Protocol step 2 for a written step: head, blocks and manifest in one transaction,
    /// flush; then publishes it to readers.
    fn commit_step(
        &self,
        step: WrittenStep,
        extra_meta: Option<&sled::Batch>,
    ) -> Result<(), StorageError> {
        let i = &self.inner;
        let (header, seg) = (step.head, step.seg);
        let old = i.live();
        let mut live: Vec<Arc<Segment>> = old.segments.clone();
        live.push(Arc::new(seg));
        let triples = old.triples + step.stats.triples;
        let mut meta = extra_meta.cloned().unwrap_or_default();
        meta.insert(META_FINAL_HEIGHT, &header.height.to_be_bytes());
        meta.insert(META_FINAL_HASH, &header.hash().0);
        meta.insert(META_NEXT_TERM, &step.next_term_id.to_be_bytes());
        meta.insert(META_TRIPLES, &triples.to_be_bytes());
        meta.insert(META_DATA_TRIPLES, &step.data_triples.to_be_bytes());
        meta.insert(META_SEGMENTS, encode_manifest(&live));
        meta.insert(
            META_NEXT_SEGMENT,
            &i.next_segment_id.load(Ordering::SeqCst).to_be_bytes(),
        );
        for height in &step.governance_heights {
            meta.insert(
                [META_GOVERNANCE_HEIGHT, &height.to_be_bytes()[..]].concat(),
                &[][..],
            );
        }
        let mut blocks = sled::Batch::default();
        let mut index = sled::Batch::default();
        let mut pending = sled::Batch::default();
        for (height, hash, encoded) in step.blocks {
            put_pieces(&mut blocks, &height.to_be_bytes(), &encoded);
            index.insert(&hash.0, &height.to_be_bytes());
            remove_pieces(&mut pending, &hash.0, encoded.len());
        }
        let trees = [&i.blocks, &i.block_index, &i.pending, &i.meta];
        let batches = [&blocks, &index, &pending, &meta];
        trees
            .as_slice()
            .transaction(|tt: &Vec<TransactionalTree>| {
                for (t, b) in tt.iter().zip(&batches) {
                    t.apply_batch(b)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StorageError::Sled(e),
                TransactionError::Abort(()) => {
                    StorageError::corrupt("transaction", "commit aborted")
                }
            })?;
        // The transaction is the commit point: from here the database holds the new state,
        // so memory follows it even if the flush fails (the error still reaches the caller,
        // which must not report the blocks final).
        let flushed = i.db.flush();
        i.publish(View {
            head: header,
            triples,
            data_triples: step.data_triples,
            next_term_id: step.next_term_id,
            segments: live,
        });
        flushed?;
        Ok(())
    }

    /// Merges small segments while the merge policy asks for it, then deletes the pages of
    /// merged segments no reader holds any more. Returns the number of merges done.
    ///
    /// Commits never wait for this: it reads only immutable segments while it builds the
    /// merged one, and takes the writer lock just to switch the manifest (the writer only
    /// appends segments, so the inputs are still there, in place). One merge runs at a time;
    /// a call while another runs returns at once. The node runs it on a blocking thread after
    /// each commit. [`Store::commit_final`] itself merges only when more than
    /// [`SYNC_MERGE_SEGMENTS`] segments are live (a caller that never merges, such as a bulk
    /// import, still keeps lookups bounded).
    pub fn merge_segments(&self) -> Result<usize, StorageError> {
        let i = &self.inner;
        if i.merging.swap(true, Ordering::SeqCst) {
            return Ok(0);
        }
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _done = Done(&i.merging);
        let mut merges = 0;
        loop {
            let live = i.live();
            let sizes: Vec<u64> = live.iter().map(|s| s.quad_count()).collect();
            let Some(start) = segment::merge_candidate(&sizes) else {
                break;
            };
            let inputs: Vec<Arc<Segment>> = live[start..].to_vec();
            drop(live);
            let id = i.next_segment_id.fetch_add(1, Ordering::SeqCst);
            let started = std::time::Instant::now();
            let mut sink = BatchSink::new(&i.segments);
            let merged = segment::merge(&Uncached(i), id, &inputs, &mut sink)?;
            sink.finish()?;
            i.db.flush()?;
            let quads = merged.quad_count();
            // Switch the manifest under the writer lock.
            let _w = i
                .write_lock
                .lock()
                .map_err(|_| StorageError::corrupt("memory", "writer lock poisoned"))?;
            let now = i.live();
            let pos = now.iter().position(|s| Arc::ptr_eq(s, &inputs[0]));
            let in_place = pos.is_some_and(|p| {
                now.get(p..p + inputs.len())
                    .is_some_and(|run| run.iter().zip(&inputs).all(|(a, b)| Arc::ptr_eq(a, b)))
            });
            let Some(pos) = pos.filter(|_| in_place) else {
                // Cannot happen with one writer and one merger; drop the work.
                if let Ok(mut g) = i.graveyard.lock() {
                    g.push(Arc::new(merged));
                }
                break;
            };
            let mut next: Vec<Arc<Segment>> = now[..pos].to_vec();
            next.push(Arc::new(merged));
            next.extend(now[pos + inputs.len()..].iter().cloned());
            let mut meta = sled::Batch::default();
            meta.insert(META_SEGMENTS, encode_manifest(&next));
            meta.insert(
                META_NEXT_SEGMENT,
                &i.next_segment_id.load(Ordering::SeqCst).to_be_bytes(),
            );
            i.meta.apply_batch(meta)?;
            let flushed = i.db.flush();
            i.publish(View {
                head: now.head.clone(),
                triples: now.triples,
                data_triples: now.data_triples,
                next_term_id: now.next_term_id,
                segments: next,
            });
            if let Ok(mut g) = i.graveyard.lock() {
                g.extend(inputs.iter().cloned());
            }
            flushed?;
            merges += 1;
            tracing::debug!(
                merged = inputs.len(),
                quads,
                ms = started.elapsed().as_millis() as u64,
                "merged segments"
            );
        }
        self.collect_garbage()?;
        Ok(merges)
    }

    /// Whether a merge is running or due (for tools that wait for storage to settle).
    pub fn merge_due(&self) -> bool {
        let i = &self.inner;
        let sizes: Vec<u64> = i.live().iter().map(|s| s.quad_count()).collect();
        i.merging.load(Ordering::SeqCst) || segment::merge_candidate(&sizes).is_some()
    }

    fn collect_garbage(&self) -> Result<(), StorageError> {
        let i = &self.inner;
        let dead: Vec<Arc<Segment>> = match i.graveyard.lock() {
            Ok(mut g) => {
                let (dead, keep): (Vec<_>, Vec<_>) =
                    g.drain(..).partition(|s| Arc::strong_count(s) == 1);
                *g = keep;
                dead
            }
            Err(_) => return Ok(()),
        };
        for seg in dead {
            remove_prefix(&i.segments, &seg.id.to_be_bytes())?;
        }
        Ok(())
    }

    /// Persists a non-final block so a restart can rebuild the fork tree.
    pub fn put_pending(&self, block: &Block) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        put_pieces(&mut batch, &block.hash().0, &block.encode());
        self.inner.pending.apply_batch(batch)?;
        Ok(())
    }

    pub fn remove_pending(&self, hash: &Hash) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for k in self.inner.pending.scan_prefix(hash.0).keys() {
            batch.remove(k?);
        }
        self.inner.pending.apply_batch(batch)?;
        Ok(())
    }

    /// Every pending block, in no particular order.
    pub fn pending_blocks(&self) -> Result<Vec<Block>, StorageError> {
        let mut out = Vec::new();
        for kv in reassembled(self.inner.pending.iter(), 32) {
            let (k, v) = kv?;
            out.push(Block::decode(&v).map_err(|e| {
                StorageError::corrupt(format!("pending block {}", hex::encode(&k)), e)
            })?);
        }
        Ok(out)
    }

    /// Quads in the dataset: transaction data plus chain metadata. Kept as a counter.
    pub fn triple_count(&self) -> u64 {
        self.inner.live().triples
    }

    /// Quads that came from transaction documents (without chain metadata).
    pub fn data_triple_count(&self) -> u64 {
        self.inner.live().data_triples
    }

    /// How the dataset is stored right now.
    pub fn storage_stats(&self) -> StorageStats {
        let live = self.inner.live();
        StorageStats {
            segments: live.len(),
            quads: live.iter().map(|s| s.quad_count()).sum(),
            terms: live.next_term_id - 1,
            header_bytes: live.iter().map(|s| s.memory()).sum(),
        }
    }

    /// The RDF dataset over the store, for sophia APIs: a consistent snapshot of what was
    /// final when it was taken.
    pub fn dataset(&self) -> SledDataset<'_> {
        SledDataset {
            core: Core {
                inner: &self.inner,
                segs: self.inner.live(),
                deadline: None,
            },
        }
    }

    /// Graphs holding the statement `s p o`, by one index lookup: the fast path for "who
    /// asserted this triple" (a tx graph `urn:provchain:tx:ID` names the transaction). The
    /// SPARQL form `GRAPH ?g { s p o }` is correct but sophia evaluates it graph by graph,
    /// which grows with the number of transactions.
    pub fn statement_graphs<S, P, O>(
        &self,
        s: S,
        p: P,
        o: O,
    ) -> Result<Vec<StoreTerm>, StorageError>
    where
        S: sophia_api::term::Term,
        P: sophia_api::term::Term,
        O: sophia_api::term::Term,
    {
        use sophia_api::dataset::Dataset;
        use sophia_api::quad::Quad;
        use sophia_api::term::matcher::Any;
        let mut out = Vec::new();
        for q in self.dataset().quads_matching([s], [p], [o], Any) {
            if let Some(g) = q?.to_g() {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.inner.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use provchain_consensus::{Keypair, RdfFormat, TxBody};

    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_secret([n; 32])
    }

    fn genesis() -> Genesis {
        Genesis {
            network_id: "storage-unit-test".into(),
            authorities: vec![key(1).public()],
            block_interval_ms: 1000,
            governance: Default::default(),
        }
    }

    fn tx(g: &Genesis, format: RdfFormat, data: &str, ts: u64) -> Transaction {
        let body = TxBody {
            format,
            data: data.into(),
            submitter: key(2).public(),
            client: None,
            timestamp_ms: ts,
        };
        Transaction::sign(body, &key(2), &g.hash())
    }

    fn block(g: &Genesis, parent: &Block, txs: Vec<Transaction>) -> Block {
        let slot = parent.header.slot + 1;
        let at = 1_700_000_000_000 + slot * 1000;
        Block::seal(&parent.header, slot, at, txs, &key(1), &g.hash())
    }

    const TURTLE: &str = "@prefix ex: <http://example.org/> .\n\
        ex:batch9 ex:madeFrom [ ex:lot \"L7\" ] ; ex:site ex:plant2 .";
    const NTRIPLES: &str = "_:q <http://example.org/lot> \"L7\" .\n\
        <http://example.org/batch9> <http://example.org/site> <http://example.org/plant2> .\n\
        <http://example.org/batch9> <http://example.org/madeFrom> _:q .\n";

    #[test]
    fn digests_of_a_database_written_before_the_digest_sections_are_still_read()
    -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::corrupt("test", e.to_string()))?;
        let g = genesis();
        let a = tx(&g, RdfFormat::Turtle, TURTLE, 1);
        let b1 = block(&g, &g.block(), vec![a.clone()]);
        let d = {
            let store = Store::open(dir.path(), &g)?;
            store.commit_final(std::slice::from_ref(&b1))?;
            let Some(TxDigest::Sha256(d)) = store.tx_digest(&a.id())? else {
                panic!("the document has a digest");
            };
            // What earlier versions wrote: segment headers of version 1 (no digest
            // sections) and the digests as rows both ways.
            let i = &store.inner;
            for seg in &i.live().segments {
                i.segments
                    .insert(segment::header_key(seg.id), seg.encode_as(1))?;
            }
            i.digests
                .insert([&[LEGACY_DIGEST_BY_TX][..], &a.id().0].concat(), &d[..])?;
            let by_value = [
                &[LEGACY_DIGEST_BY_VALUE][..],
                &d,
                &1u64.to_be_bytes(),
                &0u32.to_be_bytes(),
            ]
            .concat();
            i.digests.insert(by_value, &a.id().0[..])?;
            i.db.flush()?;
            d
        };
        let store = Store::open(dir.path(), &g)?;
        assert!(
            store
                .inner
                .live()
                .segments
                .iter()
                .all(|s| s.tx_digests.total == 0 && s.digests.total == 0),
            "the headers read back as version 1"
        );
        assert_eq!(store.tx_digest(&a.id())?, Some(TxDigest::Sha256(d)));
        let b = tx(&g, RdfFormat::NTriples, NTRIPLES, 3);
        store.commit_final(&[block(&g, &b1, vec![b.clone()])])?;
        assert_eq!(store.tx_digest(&b.id())?, Some(TxDigest::Sha256(d)));
        let found: Vec<_> = store
            .transactions_by_digest(&d, 10)?
            .into_iter()
            .map(|(id, loc)| (id, loc.height))
            .collect();
        assert_eq!(
            found,
            vec![(a.id(), 1), (b.id(), 2)],
            "earlier rows first, then the sections"
        );
        Ok(())
    }
}
