//! The [`Store`]: chain trees, pending blocks, the commit path and reads.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use provchain_consensus::codec::Reader;
use provchain_consensus::{Block, BlockHeader, Decode, Encode, Genesis, Hash, Transaction};
use serde::Serialize;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::dataset::{Core, DEFAULT_GRAPH_ID, Dict, INDEX_NAMES, SledDataset, quad_key, u64_value};
use crate::error::StorageError;
use crate::rdf::{self, OwnedQuad};
use crate::term::{
    OwnedTerm, XSD_DATE_TIME, XSD_INTEGER, dictionary_key, encode_term, iri, string_literal,
    typed_literal,
};
use crate::vocab;

/// Version of the on-disk layout. Bump on any incompatible change to trees or encodings.
pub const SCHEMA_VERSION: u32 = 1;
/// Upper bound on index writes in one sled transaction. A `commit_final` call with more is
/// split at block boundaries into several atomic steps (each leaves a consistent final head),
/// so a long sync batch cannot hold an unbounded write set in memory.
pub const MAX_WRITES_PER_TRANSACTION: usize = 600_000;

const META_SCHEMA: &[u8] = b"schema_version";
const META_GENESIS: &[u8] = b"genesis";
const META_GENESIS_HASH: &[u8] = b"genesis_hash";
const META_FINAL_HEIGHT: &[u8] = b"final_height";
const META_FINAL_HASH: &[u8] = b"final_hash";
const META_NEXT_TERM: &[u8] = b"next_term_id";
const META_TRIPLES: &[u8] = b"triple_count";
const META_DATA_TRIPLES: &[u8] = b"data_triple_count";

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
    fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.height.to_be_bytes());
        b[8..12].copy_from_slice(&self.index.to_be_bytes());
        b[12..].copy_from_slice(&self.triples.to_be_bytes());
        b
    }
    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 20 {
            return None;
        }
        Some(Self {
            height: u64_value(&v[..8])?,
            index: u32::from_be_bytes(v[8..12].try_into().ok()?),
            triples: u64_value(&v[12..])?,
        })
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitStats {
    pub blocks: u64,
    pub transactions: u64,
    /// New quads in the dataset (transaction data plus chain metadata).
    pub triples: u64,
}

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) blocks: sled::Tree,
    pub(crate) block_index: sled::Tree,
    pub(crate) tx_index: sled::Tree,
    pub(crate) pending: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) dict: Dict,
    pub(crate) idx: [sled::Tree; 6],
    pub(crate) genesis: Genesis,
    pub(crate) genesis_hash: Hash,
    head: RwLock<BlockHeader>,
    triples: AtomicU64,
    data_triples: AtomicU64,
    next_term_id: AtomicU64,
    /// The store has one writer by contract; this makes a second one wait instead of corrupt.
    write_lock: Mutex<()>,
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

/// Pending writes of one or more blocks, applied in one sled transaction.
#[derive(Default)]
struct WriteSet {
    blocks: sled::Batch,
    block_index: sled::Batch,
    tx_index: sled::Batch,
    pending: sled::Batch,
    term_ids: sled::Batch,
    terms: sled::Batch,
    idx: [sled::Batch; 6],
    writes: usize,
    stats: CommitStats,
    data_triples: u64,
    head: Option<(u64, Hash, BlockHeader)>,
    next_term_id: u64,
}

/// Assigns term ids during a commit: new terms get ids from the counter and are written with
/// the block that first uses them.
struct Interner<'a> {
    dict: &'a Dict,
    local: HashMap<Vec<u8>, u64>,
    next: u64,
}

impl Interner<'_> {
    fn intern(&mut self, t: &OwnedTerm, ws: &mut WriteSet) -> Result<u64, StorageError> {
        let enc = encode_term(t).ok_or_else(|| {
            StorageError::corrupt("transaction data", "a term the store cannot hold")
        })?;
        let key = dictionary_key(&enc);
        if let Some(&id) = self.local.get(&key) {
            return Ok(id);
        }
        if let Some(id) = self.dict.lookup_key(&key)? {
            self.local.insert(key, id);
            return Ok(id);
        }
        let id = self.next;
        self.next = self
            .next
            .checked_add(1)
            .ok_or(StorageError::TermIdsExhausted)?;
        ws.term_ids.insert(key.clone(), &id.to_be_bytes());
        ws.terms.insert(&id.to_be_bytes(), enc);
        ws.writes += 2;
        self.local.insert(key, id);
        Ok(id)
    }
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
fn block_metadata(block: &Block) -> Vec<[OwnedTerm; 3]> {
    let h = &block.header;
    let b = iri(vocab::block_iri(&block.hash()));
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
            b,
            iri(vocab::PROV_GENERATED_AT_TIME),
            date_time(h.timestamp_ms),
        ]);
    }
    out
}

/// Chain metadata statements for one transaction.
fn tx_metadata(
    block: &Block,
    tx: &Transaction,
    id: &Hash,
    index: u32,
    triples: u64,
    named_graphs: &[OwnedTerm],
) -> Vec<[OwnedTerm; 3]> {
    let t = iri(vocab::tx_iri(id));
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
        [
            t.clone(),
            iri(vocab::PC_IN_BLOCK),
            iri(vocab::block_iri(&block.hash())),
        ],
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

/// Parses a transaction's document in its scope and deduplicates it: the quads the store
/// holds for it. Shared by commit and integrity validation so both see the same statements.
pub(crate) fn tx_quads(tx: &Transaction, id: &Hash) -> Result<Vec<OwnedQuad>, rdf::RdfError> {
    let mut quads = rdf::parse(tx.body.format, &tx.body.data, &id.to_hex())?;
    rdf::dedup_quads(&mut quads);
    Ok(quads)
}

impl Store {
    /// Opens (creating on first use) the database in `dir` for the network `genesis`.
    /// On first open the genesis block is committed at height 0; later opens check the
    /// stored genesis and the tip, without replaying anything.
    pub fn open(dir: &Path, genesis: &Genesis) -> Result<Store, StorageError> {
        Self::open_with_cache(dir, genesis, 256 * 1024 * 1024)
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
            let db = sled::Config::new().path(dir).open()?;
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

    /// As [`Store::open`] with sled's page cache bounded to `cache_bytes`
    /// (`storage.cache_size_mb`).
    pub fn open_with_cache(
        dir: &Path,
        genesis: &Genesis,
        cache_bytes: u64,
    ) -> Result<Store, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        let t = |name: &str| db.open_tree(name);
        let idx = [
            t(INDEX_NAMES[0])?,
            t(INDEX_NAMES[1])?,
            t(INDEX_NAMES[2])?,
            t(INDEX_NAMES[3])?,
            t(INDEX_NAMES[4])?,
            t(INDEX_NAMES[5])?,
        ];
        let genesis_hash = genesis.hash();
        let inner = Inner {
            blocks: t("blocks")?,
            block_index: t("block_index")?,
            tx_index: t("tx_index")?,
            pending: t("pending")?,
            meta: t("meta")?,
            dict: Dict::new(t("term_ids")?, t("terms")?),
            idx,
            genesis: genesis.clone(),
            genesis_hash,
            head: RwLock::new(genesis.block().header),
            triples: AtomicU64::new(0),
            data_triples: AtomicU64::new(0),
            next_term_id: AtomicU64::new(DEFAULT_GRAPH_ID + 1),
            write_lock: Mutex::new(()),
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
        let genesis_block = i.genesis.block();
        let mut extra = sled::Batch::default();
        extra.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes());
        extra.insert(META_GENESIS, i.genesis.encode());
        extra.insert(META_GENESIS_HASH, &i.genesis_hash.0);
        let plan = self.plan(&[genesis_block], 0, i.genesis_hash)?;
        self.apply(plan, Some(extra))?;
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
        let block = self.block_by_height(height)?.ok_or_else(|| {
            StorageError::corrupt("chain", format!("final head block {height} is missing"))
        })?;
        if block.hash() != hash || block.header.height != height {
            return Err(StorageError::corrupt(
                "chain",
                format!("block at the final head height {height} is not the recorded head {hash}"),
            ));
        }
        if i.blocks
            .last()?
            .is_some_and(|(k, _)| k.as_ref() != height.to_be_bytes())
        {
            return Err(StorageError::corrupt(
                "chain",
                "blocks exist above the final head",
            ));
        }
        i.triples.store(
            be_u64(i.meta.get(META_TRIPLES)?, "triple count")?,
            Ordering::SeqCst,
        );
        i.data_triples.store(
            be_u64(i.meta.get(META_DATA_TRIPLES)?, "data triple count")?,
            Ordering::SeqCst,
        );
        i.next_term_id.store(
            be_u64(i.meta.get(META_NEXT_TERM)?, "next term id")?,
            Ordering::SeqCst,
        );
        *i.head
            .write()
            .map_err(|_| StorageError::corrupt("memory", "head lock poisoned"))? = block.header;
        tracing::info!(height, head = %hash, "opened chain database");
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
        self.inner
            .head
            .read()
            .map(|h| h.clone())
            .map_err(|_| StorageError::corrupt("memory", "head lock poisoned"))
    }

    pub fn block_by_height(&self, h: u64) -> Result<Option<Block>, StorageError> {
        match self.inner.blocks.get(h.to_be_bytes())? {
            None => Ok(None),
            Some(v) => Block::decode(&v)
                .map(Some)
                .map_err(|e| StorageError::corrupt(format!("block {h}"), e)),
        }
    }

    /// Header only, without decoding the transactions.
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
        for kv in self.inner.blocks.range(from.to_be_bytes()..).take(limit) {
            let (k, v) = kv?;
            let h = u64_value(&k).unwrap_or(u64::MAX);
            out.push(
                Block::decode(&v).map_err(|e| StorageError::corrupt(format!("block {h}"), e))?,
            );
        }
        Ok(out)
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<TxLocation>, StorageError> {
        match self.inner.tx_index.get(id.0)? {
            None => Ok(None),
            Some(v) => TxLocation::decode(&v).map(Some).ok_or_else(|| {
                StorageError::corrupt("transaction index", format!("entry for {id} is malformed"))
            }),
        }
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
    /// applies their RDF: atomically (see the crate docs), then flushed. On any error nothing
    /// is written. Committed blocks are also removed from the pending store.
    pub fn commit_final(&self, blocks: &[Block]) -> Result<CommitStats, StorageError> {
        let _w = self
            .inner
            .write_lock
            .lock()
            .map_err(|_| StorageError::corrupt("memory", "writer lock poisoned"))?;
        if blocks.is_empty() {
            return Ok(CommitStats::default());
        }
        let head = self.final_head()?;
        let plans = self.plan(blocks, head.height + 1, head.hash())?;
        let mut stats = CommitStats::default();
        for ws in plans {
            let s = ws.stats;
            self.apply(vec![ws], None)?;
            stats.blocks += s.blocks;
            stats.transactions += s.transactions;
            stats.triples += s.triples;
        }
        self.flush()?;
        Ok(stats)
    }

    /// Validates linkage, parses every transaction and builds the writes, grouped into
    /// write sets of whole blocks. Reads only.
    fn plan(
        &self,
        blocks: &[Block],
        first_height: u64,
        first_parent: Hash,
    ) -> Result<Vec<WriteSet>, StorageError> {
        let i = &self.inner;
        let mut expected = (first_height, first_parent);
        for b in blocks {
            let h = &b.header;
            if h.height != expected.0 || h.parent_hash != expected.1 {
                return Err(StorageError::NotNextBlock {
                    expected_height: expected.0,
                    expected_parent: expected.1,
                    got_height: h.height,
                    got_parent: h.parent_hash,
                    got_hash: b.hash(),
                });
            }
            expected = (h.height + 1, b.hash());
        }
        let mut interner = Interner {
            dict: &i.dict,
            local: HashMap::new(),
            next: i.next_term_id.load(Ordering::SeqCst),
        };
        let chain_graph = iri(vocab::CHAIN_GRAPH);
        let mut seen_tx = HashSet::new();
        let mut seen_named: HashSet<[u64; 4]> = HashSet::new();
        let mut sets = vec![WriteSet::default()];
        let mut data_total = i.data_triples.load(Ordering::SeqCst);
        for block in blocks {
            if sets
                .last()
                .is_some_and(|ws| ws.writes >= MAX_WRITES_PER_TRANSACTION)
            {
                sets.push(WriteSet::default());
            }
            let Some(ws) = sets.last_mut() else { continue };
            let hash = block.hash();
            let height = block.header.height;
            ws.blocks.insert(&height.to_be_bytes(), block.encode());
            ws.block_index.insert(&hash.0, &height.to_be_bytes());
            ws.pending.remove(&hash.0);
            ws.writes += 3;
            ws.stats.blocks += 1;
            let cg = interner.intern(&chain_graph, ws)?;
            let mut quads: Vec<[u64; 4]> = Vec::new();
            for [s, p, o] in block_metadata(block) {
                let q = [
                    interner.intern(&s, ws)?,
                    interner.intern(&p, ws)?,
                    interner.intern(&o, ws)?,
                    cg,
                ];
                quads.push(q);
            }
            for (index, tx) in block.transactions.iter().enumerate() {
                let index = index as u32;
                let id = tx.id();
                if !seen_tx.insert(id) || i.tx_index.contains_key(id.0)? {
                    return Err(StorageError::DuplicateTransaction { tx: id, height });
                }
                let parsed = tx_quads(tx, &id).map_err(|error| StorageError::InvalidRdf {
                    tx: id,
                    height,
                    error,
                })?;
                let n = parsed.len() as u64;
                let txg = interner.intern(&iri(vocab::tx_iri(&id)), ws)?;
                let mut named: Vec<OwnedTerm> = Vec::new();
                for ([s, p, o], g) in &parsed {
                    let gid = match g {
                        None => txg,
                        Some(g) => {
                            if !named.iter().any(|n| sophia_api::term::Term::eq(n, g)) {
                                named.push(g.clone());
                            }
                            interner.intern(g, ws)?
                        }
                    };
                    let q = [
                        interner.intern(s, ws)?,
                        interner.intern(p, ws)?,
                        interner.intern(o, ws)?,
                        gid,
                    ];
                    if g.is_some() {
                        // Shared graph: the quad may already be stored or come twice here.
                        if !seen_named.insert(q) || i.idx[0].contains_key(quad_key(0, &q))? {
                            continue;
                        }
                    }
                    quads.push(q);
                    data_total += 1;
                }
                for [s, p, o] in tx_metadata(block, tx, &id, index, n, &named) {
                    let q = [
                        interner.intern(&s, ws)?,
                        interner.intern(&p, ws)?,
                        interner.intern(&o, ws)?,
                        cg,
                    ];
                    quads.push(q);
                }
                ws.tx_index.insert(
                    &id.0,
                    &TxLocation {
                        height,
                        index,
                        triples: n,
                    }
                    .encode(),
                );
                ws.writes += 1;
                ws.stats.transactions += 1;
            }
            for q in &quads {
                for (k, batch) in ws.idx.iter_mut().enumerate() {
                    batch.insert(&quad_key(k, q), &[]);
                }
            }
            ws.writes += quads.len() * 6;
            ws.stats.triples += quads.len() as u64;
            ws.data_triples = data_total;
            ws.next_term_id = interner.next;
            ws.head = Some((height, hash, block.header.clone()));
        }
        Ok(sets)
    }

    /// Applies write sets, each in one sled transaction over every tree it touches, with the
    /// final head and counters in the same transaction.
    fn apply(
        &self,
        sets: Vec<WriteSet>,
        extra_meta: Option<sled::Batch>,
    ) -> Result<(), StorageError> {
        let i = &self.inner;
        for ws in sets {
            let Some((height, hash, header)) = ws.head.clone() else {
                continue;
            };
            let triples = i.triples.load(Ordering::SeqCst) + ws.stats.triples;
            let mut meta = extra_meta.clone().unwrap_or_default();
            meta.insert(META_FINAL_HEIGHT, &height.to_be_bytes());
            meta.insert(META_FINAL_HASH, &hash.0);
            meta.insert(META_NEXT_TERM, &ws.next_term_id.to_be_bytes());
            meta.insert(META_TRIPLES, &triples.to_be_bytes());
            meta.insert(META_DATA_TRIPLES, &ws.data_triples.to_be_bytes());
            let trees: Vec<&sled::Tree> = vec![
                &i.blocks,
                &i.block_index,
                &i.tx_index,
                &i.pending,
                &i.meta,
                &i.dict.term_ids,
                &i.dict.terms,
                &i.idx[0],
                &i.idx[1],
                &i.idx[2],
                &i.idx[3],
                &i.idx[4],
                &i.idx[5],
            ];
            let batches: Vec<&sled::Batch> = vec![
                &ws.blocks,
                &ws.block_index,
                &ws.tx_index,
                &ws.pending,
                &meta,
                &ws.term_ids,
                &ws.terms,
                &ws.idx[0],
                &ws.idx[1],
                &ws.idx[2],
                &ws.idx[3],
                &ws.idx[4],
                &ws.idx[5],
            ];
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
            i.triples.store(triples, Ordering::SeqCst);
            i.data_triples.store(ws.data_triples, Ordering::SeqCst);
            i.next_term_id.store(ws.next_term_id, Ordering::SeqCst);
            if let Ok(mut h) = i.head.write() {
                *h = header;
            }
        }
        i.db.flush()?;
        Ok(())
    }

    /// Persists a non-final block so a restart can rebuild the fork tree.
    pub fn put_pending(&self, block: &Block) -> Result<(), StorageError> {
        self.inner.pending.insert(block.hash().0, block.encode())?;
        Ok(())
    }

    pub fn remove_pending(&self, hash: &Hash) -> Result<(), StorageError> {
        self.inner.pending.remove(hash.0)?;
        Ok(())
    }

    /// Every pending block, in no particular order.
    pub fn pending_blocks(&self) -> Result<Vec<Block>, StorageError> {
        let mut out = Vec::new();
        for kv in self.inner.pending.iter() {
            let (k, v) = kv?;
            out.push(Block::decode(&v).map_err(|e| {
                StorageError::corrupt(format!("pending block {}", hex::encode(&k)), e)
            })?);
        }
        Ok(out)
    }

    /// Quads in the dataset: transaction data plus chain metadata. Kept as a counter.
    pub fn triple_count(&self) -> u64 {
        self.inner.triples.load(Ordering::SeqCst)
    }

    /// Quads that came from transaction documents (without chain metadata).
    pub fn data_triple_count(&self) -> u64 {
        self.inner.data_triples.load(Ordering::SeqCst)
    }

    /// The RDF dataset over the store, for sophia APIs.
    pub fn dataset(&self) -> SledDataset<'_> {
        SledDataset {
            core: Core {
                inner: &self.inner,
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
    ) -> Result<Vec<crate::term::StoreTerm>, StorageError>
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
