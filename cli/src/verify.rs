//! `verify`: offline integrity check of a stopped node's database (`<data-dir>/db`), through
//! the storage crate's own validation (`Store::validate_integrity`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use provchain_storage::{IntegrityReport, Store};

use crate::output;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The node's data directory (storage.data_dir); the database is its `db` folder.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// An inclusion proof (JSON from GET /api/transactions/{id}/proof) to check offline.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    pub proof: Option<PathBuf>,
    /// With --proof: the genesis hash of the network you trust; the proof must be for it.
    #[arg(long, value_name = "HASH", requires = "proof")]
    pub genesis_hash: Option<String>,
    /// Print the report (or the proven claim) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.proof {
        return verify_proof(path, args.genesis_hash.as_deref(), args.json);
    }
    let Some(data_dir) = &args.data_dir else {
        bail!("give --data-dir DIR or --proof FILE")
    };
    let db = data_dir.join("db");
    if !db.is_dir() {
        bail!(
            "no database at {}; --data-dir must be a node's storage.data_dir (the folder holding `db`)",
            db.display()
        );
    }
    let store = Store::open_existing(&db).map_err(|e| {
        let text = e.to_string();
        if text.contains("acquire lock") || text.contains("WouldBlock") {
            anyhow!(
                "cannot open {}: the database is locked by another process; is the node still running? stop it first",
                db.display()
            )
        } else {
            anyhow!("cannot open {}: {text}", db.display())
        }
    })?;
    let report = check(&store)?;
    drop(store);
    if args.json {
        output::print_json(&report)?;
    } else {
        output::emit(&render(&report))?;
    }
    match &report.first_error {
        _ if report.ok => Ok(()),
        Some(e) => bail!("integrity check failed: block {}: {}", e.height, e.reason),
        None => bail!("integrity check failed"),
    }
}

/// Runs the validation with a progress bar on stderr (drawn only when stderr is a terminal).
fn check(store: &Store) -> anyhow::Result<IntegrityReport> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} blocks ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let report = store.validate_integrity(&mut |done, total| {
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    report.map_err(|e| anyhow!("integrity check could not run: {e}"))
}

/// The report as a checks table and a summary line.
pub fn render(report: &IntegrityReport) -> String {
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            vec![
                c.name.to_string(),
                if c.passed { "ok" } else { "FAILED" }.into(),
                c.detail.clone(),
            ]
        })
        .collect();
    let mut out = output::table(&["CHECK", "RESULT", "DETAIL"], &rows);
    out.push_str(&format!(
        "checked {} blocks, {} transactions: {}\n",
        report.checked_blocks,
        report.checked_transactions,
        if report.ok { "OK" } else { "FAULTY" }
    ));
    out
}

/// Checks an inclusion proof offline and prints the claim it proves.
fn verify_proof(
    path: &std::path::Path,
    trusted_genesis: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    use provchain_consensus::{Hash, InclusionProof};
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?
    };
    let proof: InclusionProof = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not an inclusion proof: {e}", path.display()))?;
    let claim = proof
        .verify()
        .map_err(|e| anyhow!("proof is invalid: {e}"))?;
    if let Some(g) = trusted_genesis {
        let g = Hash::from_hex(g).map_err(|e| anyhow!("--genesis-hash: {e}"))?;
        if g != claim.genesis_hash {
            bail!(
                "proof is for network {} (genesis {}), not the trusted genesis {g}",
                claim.network_id,
                claim.genesis_hash
            );
        }
    }
    if json {
        return output::print_json(&claim);
    }
    let when = |ms: u64| {
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
    };
    let mut out = String::new();
    out.push_str("proof is valid\n");
    out.push_str(&format!("transaction  {}\n", claim.tx_id));
    out.push_str(&format!(
        "submitted by {} at {}",
        claim.submitter,
        when(claim.submitted_at_ms)
    ));
    if let Some(c) = &claim.client {
        out.push_str(&format!(" (client {c})"));
    }
    out.push_str(&format!(
        "\nsealed by    {} in block {} ({}) at {}\nnetwork      {} (genesis {})\n{} document:\n{}\n",
        claim.proposer,
        claim.block_height,
        claim.block_hash,
        when(claim.sealed_at_ms),
        claim.network_id,
        claim.genesis_hash,
        claim.format.name(),
        claim.data.trim_end()
    ));
    output::emit(&out)
}
