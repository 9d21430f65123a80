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
    pub data_dir: PathBuf,
    /// Print the integrity report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let db = args.data_dir.join("db");
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
