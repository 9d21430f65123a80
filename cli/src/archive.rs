//! `export` and `import`: portable chain archives (see `provchain_node::archive`).
//!
//! `export --node URL` pages through a running node's `GET /api/blockchain/archive`;
//! `export --data-dir DIR` reads a stopped node's database and can also write an N-Quads dump of
//! the dataset. `import` rebuilds an empty data directory from an archive, validating every
//! block; start `provchaind` on it (as an observer) and it continues syncing from its peers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Args;
use provchain_consensus::{Genesis, GovernanceParams, Hash, PublicKey};
use provchain_node::archive::{self, ArchiveStats};
use provchain_storage::Store;

use crate::client::NodeClient;
use crate::output;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Export from a running node's API.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    pub node: Option<String>,
    /// Export from a stopped node's data directory (storage.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Archive file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the dataset as N-Quads (with --data-dir).
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    pub nquads: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Archive written by `provchain export`.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Data directory to create (its `db` must not exist yet).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn report(what: &str, stats: &ArchiveStats, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(stats);
    }
    output::emit(&format!(
        "{what} {} blocks, {} transactions{}\n",
        stats.blocks,
        stats.transactions,
        if stats.quads > 0 {
            format!(", {} quads", stats.quads)
        } else {
            String::new()
        }
    ))
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.data_dir {
        let db = dir.join("db");
        let store =
            Store::open_existing(&db).map_err(|e| anyhow!("cannot open {}: {e}", db.display()))?;
        let stats = archive::export(
            &store,
            &args.out,
            args.nquads.as_deref(),
            &mut |done, total| {
                if total >= 1_000 && done % 1_000 < 256 {
                    eprintln!("exported {done}/{total} blocks");
                }
            },
        )?;
        return report("exported", &stats, args.json);
    }
    let url = args.node.as_deref().unwrap_or(crate::DEFAULT_NODE);
    let client = NodeClient::new(url, None)?;
    let status = client.get_json("/api/status")?;
    let authorities = status["authorities"]
        .as_array()
        .ok_or_else(|| anyhow!("the node's status has no authorities"))?
        .iter()
        .map(|a| PublicKey::from_hex(a.as_str().unwrap_or("")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("bad authority key in status: {e}"))?;
    let genesis = Genesis {
        network_id: status["network_id"].as_str().unwrap_or("").to_owned(),
        authorities,
        block_interval_ms: status["block_interval_ms"].as_u64().unwrap_or(0),
        governance: governance_params(&status),
    };
    let stated = Hash::from_hex(status["genesis_hash"].as_str().unwrap_or(""))
        .map_err(|e| anyhow!("bad genesis hash in status: {e}"))?;
    if genesis.hash() != stated {
        bail!("the node's genesis parameters do not hash to its genesis hash {stated}");
    }
    // For progress only: the export runs until the node has no further final block, so blocks
    // finalized while it runs are included.
    let top = status["finalized_height"].as_u64().unwrap_or(0);
    let mut w = BufWriter::new(
        File::create(&args.out)
            .map_err(|e| anyhow!("cannot create {}: {e}", args.out.display()))?,
    );
    archive::write_header(&mut w, &genesis)?;
    let mut stats = ArchiveStats::default();
    let mut next = 1;
    loop {
        let bytes = client.get_bytes(&format!("/api/blockchain/archive?from={next}&limit=1000"))?;
        if bytes.is_empty() {
            break;
        }
        let blocks = archive::decode_entries(&bytes)?;
        if blocks.is_empty() {
            break;
        }
        for b in blocks {
            if b.header.height != next {
                bail!(
                    "the node sent block {} where {next} was expected",
                    b.header.height
                );
            }
            archive::write_block(&mut w, &b)?;
            stats.blocks += 1;
            stats.transactions += b.transactions.len() as u64;
            next += 1;
        }
        eprintln!(
            "exported up to block {} (final height {top} when the export began)",
            next - 1
        );
    }
    w.flush()?;
    report("exported", &stats, args.json)
}

/// The genesis governance parameters a node's status reports; nodes that predate governance
/// report none and run with the defaults.
pub fn governance_params(status: &serde_json::Value) -> GovernanceParams {
    let defaults = GovernanceParams::default();
    GovernanceParams {
        epoch_length: status["epoch_length"]
            .as_u64()
            .unwrap_or(defaults.epoch_length),
        proposal_ttl: status["proposal_ttl"]
            .as_u64()
            .unwrap_or(defaults.proposal_ttl),
    }
}

pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let db = args.data_dir.join("db");
    std::fs::create_dir_all(&args.data_dir)?;
    let stats = archive::import(&args.file, &db, &mut |h| {
        eprintln!("imported up to block {h}")
    })?;
    report("imported", &stats, args.json)
}
