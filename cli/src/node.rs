//! Online commands against a node's HTTP API: `status`, `peers`, `submit`, `query`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::client::NodeClient;
use crate::output;
use crate::{NodeArgs, TokenArg};

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the node's JSON as is.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the node's JSON as is.
    #[arg(long)]
    pub json: bool,
}

/// RDF serialisations the node accepts.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdfFormat {
    Turtle,
    #[value(name = "n-triples", alias = "ntriples", alias = "nt")]
    NTriples,
    #[value(name = "n-quads", alias = "nquads", alias = "nq")]
    NQuads,
}

impl RdfFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Turtle => "text/turtle",
            Self::NTriples => "application/n-triples",
            Self::NQuads => "application/n-quads",
        }
    }

    /// The format given, else the one the input's extension names, else Turtle.
    pub fn resolve(given: Option<Self>, input: &str) -> Self {
        given
            .or_else(|| {
                crate::input_path(input)
                    .as_deref()
                    .and_then(Self::from_path)
            })
            .unwrap_or(Self::Turtle)
    }

    /// The node's (and the wire's) name for this format.
    pub fn to_consensus(self) -> provchain_consensus::RdfFormat {
        match self {
            Self::Turtle => provchain_consensus::RdfFormat::Turtle,
            Self::NTriples => provchain_consensus::RdfFormat::NTriples,
            Self::NQuads => provchain_consensus::RdfFormat::NQuads,
        }
    }

    /// From the file extension (`.ttl`, `.nt`, `.nq`); `None` when it says nothing.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "ttl" | "turtle" => Some(Self::Turtle),
            "nt" | "ntriples" => Some(Self::NTriples),
            "nq" | "nquads" => Some(Self::NQuads),
            _ => None,
        }
    }
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub token: TokenArg,
    /// Document format; default: from the extension (.ttl, .nt, .nq), else turtle.
    #[arg(long, value_enum)]
    pub format: Option<RdfFormat>,
    /// Wait until the transaction is final and print its block.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
    /// Print the node's JSON (the submission answer, or with --wait the final transaction).
    #[arg(long)]
    pub json: bool,
    /// The RDF document, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub input: String,
}

#[derive(Args, Debug)]
pub struct DigestArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Document format; default: from the extension (.ttl, .nt, .nq), else turtle.
    #[arg(long, value_enum)]
    pub format: Option<RdfFormat>,
    /// Print the canonical (RDFC-1.0) N-Quads instead of the digest.
    #[arg(long, conflicts_with = "find")]
    pub canonical: bool,
    /// Also list the node's final transactions with this digest.
    #[arg(long)]
    pub find: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The RDF document, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub input: String,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The SPARQL query (`-` reads it from stdin).
    #[arg(
        value_name = "SPARQL",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub query: Option<String>,
    /// Read the query from a file.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print the SPARQL JSON results as is.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print RFC 4180 CSV (SPARQL 1.1 CSV results).
    #[arg(long)]
    pub csv: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        Some(other) => other.to_string(),
    }
}

pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&args.node.node, None)?;
    let v = client.get_json("/api/status")?;
    if args.json {
        return output::print_json(&v);
    }
    output::emit(&render_status(&v))
}

/// The status as `key  value` lines.
pub fn render_status(v: &Value) -> String {
    let authorities = v
        .get("authorities")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let interval = v
        .get("block_interval_ms")
        .and_then(Value::as_u64)
        .map_or_else(
            || "-".into(),
            |ms| humantime::format_duration(Duration::from_millis(ms)).to_string(),
        );
    let mut rows = vec![
        ("node id", text(v, "node_id")),
        ("peer id", text(v, "peer_id")),
        ("network", text(v, "network_id")),
        ("genesis", text(v, "genesis_hash")),
        ("authority", text(v, "is_authority")),
        (
            "height",
            format!("{} (head {})", text(v, "height"), text(v, "head_hash")),
        ),
        (
            "finalized",
            format!(
                "{} ({})",
                text(v, "finalized_height"),
                text(v, "finalized_hash")
            ),
        ),
        ("peers", text(v, "peers")),
        ("pending txs", text(v, "pending_transactions")),
        (
            "authorities",
            format!("{authorities} at genesis (set in force: `provchain authority list`)"),
        ),
        ("block interval", interval),
    ];
    if let (Some(epoch), Some(ttl)) = (
        v.get("epoch_length").and_then(Value::as_u64),
        v.get("proposal_ttl").and_then(Value::as_u64),
    ) {
        rows.push((
            "governance",
            format!("epoch {epoch} blocks, proposals open {ttl} blocks"),
        ));
    }
    if v.get("syncing").and_then(Value::as_bool) == Some(true) {
        rows.push((
            "syncing",
            format!("yes (best peer height {})", text(v, "peer_best_height")),
        ));
    }
    if v.get("triples").is_some() {
        rows.push(("triples", text(v, "triples")));
    }
    rows.push(("version", text(v, "version")));
    rows.iter()
        .map(|(k, val)| format!("{k:<15} {val}\n"))
        .collect()
}

pub fn peers(args: &PeersArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&args.node.node, None)?;
    let v = client.get_json("/api/peers")?;
    if args.json {
        return output::print_json(&v);
    }
    let list = v
        .as_array()
        .ok_or_else(|| anyhow!("the node's /api/peers answer is not a JSON array"))?;
    output::emit(&render_peers(list, now_ms()))
}

/// The peers table; `now_ms` makes "connected for" testable.
pub fn render_peers(list: &[Value], now_ms: u64) -> String {
    if list.is_empty() {
        return "no connected peers\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let addrs = p
                .get("addresses")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into());
            let since = p
                .get("connected_since_ms")
                .and_then(Value::as_u64)
                .filter(|&s| s > 0);
            let connected = since.map_or_else(
                || "-".into(),
                |s| output::compact_duration(Duration::from_millis(now_ms.saturating_sub(s))),
            );
            vec![
                text(p, "peer_id"),
                addrs,
                text(p, "is_authority"),
                text(p, "direction"),
                connected,
            ]
        })
        .collect();
    output::table(
        &[
            "PEER ID",
            "ADDRESSES",
            "AUTHORITY",
            "DIRECTION",
            "CONNECTED",
        ],
        &rows,
    )
}

fn read_input(arg: &str) -> anyhow::Result<String> {
    match crate::input_path(arg) {
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read stdin")?;
            Ok(s)
        }
        Some(p) => {
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
        }
    }
}

/// Computes a document's canonical digest locally, as every node does for its transactions;
/// with `--find`, asks the node which final transactions carry the same statements.
pub fn digest(args: &DigestArgs) -> anyhow::Result<()> {
    let format = RdfFormat::resolve(args.format, &args.input);
    let doc = read_input(&args.input)?;
    let consensus_format = format.to_consensus();
    let quads = provchain_storage::rdf::parse(consensus_format, &doc, "doc")
        .map_err(|e| anyhow!("invalid {}: {e}", consensus_format.name()))?;
    if args.canonical {
        let text = provchain_storage::digest::canonical_nquads(&quads)
            .map_err(|e| anyhow!("no canonical form: {e}"))?;
        return output::emit(&text);
    }
    let digest = provchain_storage::digest::canonical_digest(&quads)
        .map(hex::encode)
        .map_err(|e| anyhow!("no canonical digest: {e}"))?;
    if !args.find {
        return if args.json {
            output::print_json(&serde_json::json!({ "digest": digest }))
        } else {
            output::emit(&format!("{digest}\n"))
        };
    }
    let client = NodeClient::new(&args.node.node, None)?;
    let found = client.get_json(&format!("/api/transactions?digest={digest}"))?;
    if args.json {
        return output::print_json(&found);
    }
    let txs = found
        .get("transactions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = format!("{digest}\n");
    if txs.is_empty() {
        out.push_str("no final transaction on this node has these statements\n");
    } else {
        let rows: Vec<Vec<String>> = txs
            .iter()
            .map(|t| {
                vec![
                    text(t, "tx_id"),
                    text(t, "block_height"),
                    text(t, "block_hash"),
                ]
            })
            .collect();
        out.push_str(&output::table(&["TX", "HEIGHT", "BLOCK"], &rows));
    }
    output::emit(&out)
}

/// How often `--wait` asks about the transaction.
const POLL_EVERY: Duration = Duration::from_millis(200);

pub fn submit(args: &SubmitArgs) -> anyhow::Result<()> {
    let format = RdfFormat::resolve(args.format, &args.input);
    let doc = read_input(&args.input)?;
    if doc.trim().is_empty() {
        bail!("the document is empty; nothing to submit");
    }
    let client = NodeClient::new(&args.node.node, args.token.token.clone())?;
    let body = client.post(
        "/api/transactions",
        format.content_type(),
        "application/json",
        doc,
    )?;
    let answer: Value = serde_json::from_str(&body.text)
        .map_err(|e| anyhow!("the node's answer is not JSON: {e}"))?;
    let tx_id = answer
        .get("tx_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the node's answer has no tx_id: {}", body.text.trim()))?
        .to_owned();
    if !args.wait {
        return if args.json {
            output::print_json(&answer)
        } else {
            output::emit(&format!("{tx_id}\n"))
        };
    }
    if !args.json {
        output::emit(&format!("{tx_id}\n"))?;
    }
    eprintln!(
        "submitted {tx_id}; waiting up to {} for finality",
        humantime::format_duration(args.timeout)
    );
    let tx = wait_final(&client, &tx_id, args.timeout)?;
    if args.json {
        return output::print_json(&tx);
    }
    output::emit(&format!(
        "final in block {} {}\n",
        text(&tx, "block_height"),
        text(&tx, "block_hash")
    ))
}

/// Polls the transaction until it is final; fails at the deadline naming its last status.
pub fn wait_final(client: &NodeClient, tx_id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let path = format!("/api/transactions/{tx_id}");
    let mut last = "unknown".to_owned();
    loop {
        if let Some(tx) = client.get_json_opt(&path)? {
            let status = tx
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            if status == "final" {
                return Ok(tx);
            }
            last = status;
        }
        if Instant::now() >= deadline {
            bail!(
                "transaction {tx_id} is not final after {} (status: {last}); check `provchain status` or raise --timeout",
                humantime::format_duration(timeout)
            );
        }
        std::thread::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())));
    }
}

pub fn query(args: &QueryArgs) -> anyhow::Result<()> {
    let sparql = match (&args.query, &args.file) {
        (_, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (Some(q), None) if q == "-" => read_input("-")?,
        (Some(q), None) => q.clone(),
        (None, None) => bail!("give a SPARQL query or --file"),
    };
    if sparql.trim().is_empty() {
        bail!("the query is empty");
    }
    let client = NodeClient::new(&args.node.node, None)?;
    let body = client.post(
        "/sparql",
        "application/sparql-query",
        "application/sparql-results+json, application/n-triples;q=0.9",
        sparql,
    )?;
    if !body.content_type.contains("json") {
        // CONSTRUCT / DESCRIBE answer RDF; print it as is.
        return output::emit(&body.text);
    }
    let results: Value = serde_json::from_str(&body.text)
        .map_err(|e| anyhow!("the node's SPARQL answer is not JSON: {e}"))?;
    if args.json {
        return output::print_json(&results);
    }
    if let Some(b) = results.get("boolean").and_then(Value::as_bool) {
        return output::emit(if b { "true\n" } else { "false\n" });
    }
    let (vars, rows) = solutions(&results)?;
    if args.csv {
        let mut out = output::csv_record(&vars);
        for row in &rows {
            let cells: Vec<String> = vars.iter().map(|v| output::csv_term(row.get(v))).collect();
            out.push_str(&output::csv_record(&cells));
        }
        return output::emit(&out);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vars.iter()
                .map(|v| output::render_term(row.get(v)))
                .collect()
        })
        .collect();
    let header: Vec<&str> = vars.iter().map(String::as_str).collect();
    output::emit(&output::table(&header, &cells))?;
    eprintln!(
        "{} row{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// One SPARQL solution: variable name to term.
type Solution = serde_json::Map<String, Value>;

/// `head.vars` and `results.bindings` of SPARQL JSON results.
fn solutions(results: &Value) -> anyhow::Result<(Vec<String>, Vec<Solution>)> {
    let vars = results
        .pointer("/head/vars")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the SPARQL answer has no head.vars"))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let rows = results
        .pointer("/results/bindings")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the SPARQL answer has no results.bindings"))?
        .iter()
        .filter_map(|r| r.as_object().cloned())
        .collect();
    Ok((vars, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            RdfFormat::from_path(Path::new("a.ttl")),
            Some(RdfFormat::Turtle)
        );
        assert_eq!(
            RdfFormat::from_path(Path::new("a.NT")),
            Some(RdfFormat::NTriples)
        );
        assert_eq!(
            RdfFormat::from_path(Path::new("dir/a.nq")),
            Some(RdfFormat::NQuads)
        );
        assert_eq!(RdfFormat::from_path(Path::new("a.rdf")), None);
    }

    #[test]
    fn peers_table_shows_connected_time() {
        let p = json!([{"peer_id": "12D3KooWA", "addresses": ["/ip4/127.0.0.1/tcp/1"], "is_authority": true,
            "direction": "outbound", "connected_since_ms": 1_000}]);
        let t = render_peers(
            p.as_array().map(Vec::as_slice).unwrap_or_default(),
            1_000 + 192_000,
        );
        assert!(t.starts_with("PEER ID"), "{t}");
        assert!(
            t.contains("12D3KooWA  /ip4/127.0.0.1/tcp/1  yes        outbound   3m12s"),
            "{t}"
        );
        assert_eq!(render_peers(&[], 0), "no connected peers\n");
    }
}
