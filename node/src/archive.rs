//! Portable chain archives: export the final chain, rebuild a data directory from it.
//!
//! An archive is `MAGIC`, the genesis (length-prefixed canonical encoding), then every final
//! block from height 1 as `u32 little-endian length || canonical block encoding`, to end of
//! file. It is streamable and self-describing: the importer checks the genesis hash and
//! validates every block (links, leader schedule, seals, `tx_root`, envelope signatures, RDF)
//! before committing it. Exports can also write an N-Quads dump of the dataset for other RDF
//! tools.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use provchain_consensus::{
    AuthorityHistory, Block, BlockHeader, Decode, Encode, Genesis, Limits, ValidationContext,
    validate_block,
};
use provchain_storage::Store;
use sophia_api::dataset::Dataset;
use sophia_api::quad::Quad;
use thiserror::Error;

pub const MAGIC: &[u8] = b"PROVCHAIN ARCHIVE v1\n";
/// Largest encoded block an archive may hold (far above any configured block limit).
const MAX_ENTRY: usize = 256 * 1024 * 1024;
/// Blocks committed per storage step during import.
const IMPORT_BATCH: usize = 64;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a ProvChain archive (bad magic)")]
    Magic,
    #[error("archive is corrupt: {0}")]
    Corrupt(String),
    #[error("block {height} is invalid: {reason}")]
    InvalidBlock { height: u64, reason: String },
    #[error("{0} already holds a database; import into an empty data directory")]
    NotEmpty(String),
    #[error("storage: {0}")]
    Storage(#[from] provchain_storage::StorageError),
}

/// Writes the archive header.
pub fn write_header(w: &mut impl Write, genesis: &Genesis) -> std::io::Result<()> {
    w.write_all(MAGIC)?;
    let g = genesis.encode();
    w.write_all(&(g.len() as u32).to_le_bytes())?;
    w.write_all(&g)
}

/// Writes one block entry.
pub fn write_block(w: &mut impl Write, block: &Block) -> std::io::Result<()> {
    let b = block.encode();
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(&b)
}

/// Concatenated block entries (the archive body), as served by the HTTP API.
pub fn encode_entries(blocks: &[Block]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        // Writing to a Vec cannot fail.
        let _ = write_block(&mut out, b);
    }
    out
}

/// Decodes concatenated block entries (the inverse of [`encode_entries`]).
pub fn decode_entries(mut bytes: &[u8]) -> Result<Vec<Block>, ArchiveError> {
    let mut out = Vec::new();
    while let Some(entry) = read_entry(&mut bytes)? {
        out.push(Block::decode(&entry).map_err(|e| ArchiveError::Corrupt(format!("block: {e}")))?);
    }
    Ok(out)
}

fn read_entry(r: &mut impl Read) -> Result<Option<Vec<u8>>, ArchiveError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_ENTRY {
        return Err(ArchiveError::Corrupt(format!(
            "entry of {len} bytes exceeds {MAX_ENTRY}"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .map_err(|_| ArchiveError::Corrupt("truncated entry".into()))?;
    Ok(Some(buf))
}

/// Reads an archive: its genesis, then blocks one at a time.
pub struct ArchiveReader<R: Read> {
    inner: R,
    pub genesis: Genesis,
}

impl ArchiveReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        Self::new(BufReader::new(File::open(path)?))
    }
}

impl<R: Read> ArchiveReader<R> {
    pub fn new(mut inner: R) -> Result<Self, ArchiveError> {
        let mut magic = vec![0u8; MAGIC.len()];
        inner
            .read_exact(&mut magic)
            .map_err(|_| ArchiveError::Magic)?;
        if magic != MAGIC {
            return Err(ArchiveError::Magic);
        }
        let g =
            read_entry(&mut inner)?.ok_or_else(|| ArchiveError::Corrupt("no genesis".into()))?;
        let genesis =
            Genesis::decode(&g).map_err(|e| ArchiveError::Corrupt(format!("genesis: {e}")))?;
        Ok(Self { inner, genesis })
    }

    pub fn next_block(&mut self) -> Result<Option<Block>, ArchiveError> {
        let Some(bytes) = read_entry(&mut self.inner)? else {
            return Ok(None);
        };
        Block::decode(&bytes)
            .map(Some)
            .map_err(|e| ArchiveError::Corrupt(format!("block: {e}")))
    }
}

/// What an export or import did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ArchiveStats {
    pub blocks: u64,
    pub transactions: u64,
    pub quads: u64,
}

/// Exports the final chain of an opened store to `out`, and optionally the dataset as N-Quads.
pub fn export(
    store: &Store,
    out: &Path,
    nquads: Option<&Path>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ArchiveStats, ArchiveError> {
    let mut stats = ArchiveStats::default();
    let mut w = BufWriter::new(File::create(out)?);
    write_header(&mut w, store.genesis())?;
    let top = store.final_head()?.height;
    let mut next = 1;
    while next <= top {
        let blocks = store.blocks_range(next, 256)?;
        if blocks.is_empty() {
            break;
        }
        for b in &blocks {
            write_block(&mut w, b)?;
            stats.blocks += 1;
            stats.transactions += b.transactions.len() as u64;
        }
        next += blocks.len() as u64;
        progress(next - 1, top);
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    if let Some(path) = nquads {
        stats.quads = write_nquads(store, path)?;
    }
    Ok(stats)
}

/// Writes every quad of the dataset as N-Quads.
pub fn write_nquads(store: &Store, path: &Path) -> Result<u64, ArchiveError> {
    let mut w = BufWriter::new(File::create(path)?);
    let mut line = String::new();
    let mut n = 0;
    for q in store.dataset().quads() {
        let q = q.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        line.clear();
        provchain_storage::term::write_nt(&q.s(), &mut line);
        line.push(' ');
        provchain_storage::term::write_nt(&q.p(), &mut line);
        line.push(' ');
        provchain_storage::term::write_nt(&q.o(), &mut line);
        if let Some(g) = q.g() {
            line.push(' ');
            provchain_storage::term::write_nt(&g, &mut line);
        }
        line.push_str(" .\n");
        w.write_all(line.as_bytes())?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// Rebuilds a database in `db_dir` (which must not exist yet) from an archive, validating every
/// block against the one before it and the archive's genesis.
pub fn import(
    archive: &Path,
    db_dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats, ArchiveError> {
    if db_dir.exists() && std::fs::read_dir(db_dir)?.next().is_some() {
        return Err(ArchiveError::NotEmpty(db_dir.display().to_string()));
    }
    let mut reader = ArchiveReader::open(archive)?;
    let genesis = reader.genesis.clone();
    let gh = genesis.hash();
    let store = Store::open(db_dir, &genesis)?;
    let mut parent: BlockHeader = store.final_head()?;
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut stats = ArchiveStats::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_millis() as u64);
    // Limits as large as the decoder allows: the archive's blocks were accepted by their network
    // under its own configured limits.
    let limits = Limits {
        max_block_bytes: MAX_ENTRY,
        max_block_txs: usize::MAX,
        max_tx_bytes: MAX_ENTRY,
    };
    // The authority set follows the governance items of the blocks read so far.
    let mut history =
        AuthorityHistory::from_genesis(&genesis, genesis.governance).map_err(|e| {
            ArchiveError::InvalidBlock {
                height: 0,
                reason: e.to_string(),
            }
        })?;
    while let Some(block) = reader.next_block()? {
        let height = block.header.height;
        let governance_error =
            |e: provchain_consensus::GovernanceError| ArchiveError::InvalidBlock {
                height,
                reason: e.to_string(),
            };
        if height > history.height() + 1 {
            history
                .apply_final_block(height - 1, &[])
                .map_err(governance_error)?;
        }
        let authorities = history.authorities_at(height).to_vec();
        let ctx = ValidationContext {
            genesis_hash: gh,
            authorities: &authorities,
            interval_ms: genesis.block_interval_ms,
            now_ms,
            max_drift_ms: genesis.block_interval_ms,
            limits,
        };
        validate_block(&block, &parent, &ctx).map_err(|e| ArchiveError::InvalidBlock {
            height,
            reason: e.to_string(),
        })?;
        for (index, tx) in block.transactions.iter().enumerate() {
            provchain_storage::rdf::parse(tx.body.format, &tx.body.data, "check").map_err(|e| {
                ArchiveError::InvalidBlock {
                    height,
                    reason: format!("transaction {index} has invalid RDF: {e}"),
                }
            })?;
        }
        if !block.governance.is_empty() {
            history
                .apply_final_block(height, &block.governance)
                .map_err(governance_error)?;
        }
        parent = block.header.clone();
        stats.blocks += 1;
        stats.transactions += block.transactions.len() as u64;
        batch.push(block);
        if batch.len() >= IMPORT_BATCH {
            store.commit_final(&batch)?;
            batch.clear();
            progress(height);
        }
    }
    if !batch.is_empty() {
        store.commit_final(&batch)?;
        progress(parent.height);
    }
    store.flush()?;
    stats.quads = store.triple_count();
    Ok(stats)
}
