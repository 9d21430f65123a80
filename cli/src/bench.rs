//! `provchain bench`: a load generator that measures what a network of nodes sustains.
//!
//! It submits supply-chain provenance documents (production batches, shipments and sensor
//! readings with PROV-O links — `prov:wasGeneratedBy`, `prov:used`, `prov:wasAssociatedWith`,
//! `prov:wasDerivedFrom` — typed literals, and links to earlier events' entities) over HTTP to
//! every given node in turn, either **open loop** at a target rate (`--rate`, arrivals do
//! not wait for answers, as real clients do not) or **closed loop** as fast as
//! `--concurrency` requests in flight allow (`--rate 0`). In closed loop a worker refused
//! with 503 waits what the answer's `Retry-After` says (at most 5 s) before its next request,
//! as a well-behaved client does; open-loop arrivals never wait. Each run uses fresh IRIs.
//!
//! Finality is observed, not asked per transaction: one task per node polls the node's final
//! chain (`/api/blockchain/dump?from=…`, every `--poll`) and matches the transaction ids of
//! newly final blocks against what was submitted to that node, so measuring adds a few
//! requests per second instead of one per transaction. Latency is submit (request sent) →
//! the poll that saw the transaction final on the node that accepted it; the poll interval
//! bounds the error.
//!
//! Reported: final transactions and triples per second, submit → final latency percentiles,
//! the answers (202 accepted, 503 pool full, other rejections, errors), and for nodes running
//! on this host (found by their API port, or given with `--pid`) CPU use and RSS sampled from
//! `/proc`. `--json` prints one object instead of the text report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use provchain_consensus::RdfFormat;
use serde::Serialize;
use serde_json::Value;

use crate::{DEFAULT_NODE, TokenArg, parse_duration};

/// Payload syntax of the generated transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    Turtle,
    Ntriples,
}

impl BenchFormat {
    fn rdf(self) -> RdfFormat {
        match self {
            Self::Turtle => RdfFormat::Turtle,
            Self::Ntriples => RdfFormat::NTriples,
        }
    }
    fn content_type(self) -> &'static str {
        match self {
            Self::Turtle => "text/turtle",
            Self::Ntriples => "application/n-triples",
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Node API base URLs; transactions go to them in turn. Comma-separated or repeated.
    #[arg(long = "node", value_delimiter = ',', default_value = DEFAULT_NODE)]
    pub nodes: Vec<String>,
    /// Target submission rate in transactions per second (open loop). 0: as fast as
    /// --concurrency requests in flight allow (closed loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// How long to submit.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests in flight at most. In open loop an arrival that finds them all busy is
    /// counted as `client_saturated` and not sent (the generator, not the node, is the limit).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Statements per transaction.
    #[arg(long, default_value_t = 10)]
    pub triples: usize,
    /// Payload syntax.
    #[arg(long, value_enum, default_value = "turtle")]
    pub format: BenchFormat,
    /// After submitting, wait at most this long for accepted transactions to turn final.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain: Duration,
    /// How often each node's final chain is polled (bounds the latency measurement error).
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub poll: Duration,
    /// Process ids of the nodes to sample CPU and RSS of, in --node order. Default: the
    /// process listening on each node's API port, when the node runs on this host.
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

// ---------------------------------------------------------------------------------------------
// Workload

const EX: &str = "http://example.org/supply/";

/// One transaction's document: exactly `triples` statements (at least 8) of supply-chain
/// provenance, event `n` of run `run`. Turtle is written the way clients write it (prefixes,
/// `;` lists, `a`); N-Triples in full.
pub fn document(run: u64, n: u64, triples: usize, format: RdfFormat) -> String {
    let base = format!("{EX}r{run}/");
    let kind = n % 3;
    // An earlier production batch of this run: the input this event used or derives from.
    let prev = n.saturating_sub(1 + n % 17);
    let prev = prev - prev % 3;
    let iri = |s: String| format!("<{base}{s}>");
    let shared = |s: String| format!("<{EX}{s}>");
    let prov = |s: &str| format!("<http://www.w3.org/ns/prov#{s}>");
    let lit = |v: String, dt: &str| format!("\"{v}\"^^<http://www.w3.org/2001/XMLSchema#{dt}>");
    let a = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>".to_owned();
    let (subject, activity, class) = match kind {
        0 => (
            iri(format!("batch/{n}")),
            iri(format!("production/{n}")),
            "ProductBatch",
        ),
        1 => (
            iri(format!("shipment/{n}")),
            iri(format!("transport/{n}")),
            "Shipment",
        ),
        _ => (
            iri(format!("reading/{n}")),
            iri(format!("measurement/{n}")),
            "SensorReading",
        ),
    };
    let time = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + n % 12,
        1 + n % 28,
        n % 24,
        n % 60,
        (n / 60) % 60
    );
    let mut st: Vec<(String, String, String)> = vec![
        (subject.clone(), a.clone(), shared(class.into())),
        (subject.clone(), a.clone(), prov("Entity")),
        (subject.clone(), prov("wasGeneratedBy"), activity.clone()),
        (activity.clone(), a.clone(), prov("Activity")),
        (
            activity.clone(),
            prov("wasAssociatedWith"),
            shared(format!("agent/{}", n % 40)),
        ),
        (activity.clone(), prov("endedAtTime"), lit(time, "dateTime")),
        (activity.clone(), prov("used"), iri(format!("batch/{prev}"))),
        (
            subject.clone(),
            prov("wasDerivedFrom"),
            iri(format!("batch/{prev}")),
        ),
    ];
    let mut extra = 0u64;
    while st.len() < triples {
        let (p, o) = match (kind, extra % 4) {
            (0, 0) => ("quantityKg", lit(format!("{}.5", 100 + n % 900), "decimal")),
            (0, 1) => ("lotNumber", format!("\"LOT-{run}-{n:08}\"")),
            (1, 0) => ("destination", shared(format!("site/{}", n % 25))),
            (1, 1) => ("containerId", format!("\"CONT-{:06}\"", n * 7 % 999_983)),
            (_, 0) => (
                "temperatureC",
                lit(format!("{}.{}", n % 12, n % 10), "decimal"),
            ),
            (_, 1) => ("humidityPct", lit(format!("{}", 30 + n % 50), "integer")),
            (_, 2) => ("sensor", shared(format!("sensor/{}", n % 200))),
            _ => ("note", format!("\"event {n} detail {extra}\"@en")),
        };
        st.push((subject.clone(), shared(p.into()), o));
        extra += 1;
    }
    st.truncate(triples.max(1));
    let mut doc = String::with_capacity(st.len() * 120);
    if format != RdfFormat::Turtle {
        for (s, p, o) in &st {
            doc.push_str(s);
            doc.push(' ');
            doc.push_str(p);
            doc.push(' ');
            doc.push_str(o);
            doc.push_str(" .\n");
        }
        return doc;
    }
    doc.push_str("@prefix ex: <http://example.org/supply/> .\n");
    doc.push_str("@prefix prov: <http://www.w3.org/ns/prov#> .\n");
    doc.push_str("@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n");
    let short = |t: &str| -> String {
        for (ns, pfx) in [(EX, "ex:"), ("http://www.w3.org/ns/prov#", "prov:")] {
            if let Some(local) = t
                .strip_prefix('<')
                .and_then(|x| x.strip_prefix(ns))
                .and_then(|x| x.strip_suffix('>'))
                .filter(|x| x.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return format!("{pfx}{local}");
            }
        }
        if t == a {
            return "a".into();
        }
        match t.split_once("^^<http://www.w3.org/2001/XMLSchema#") {
            Some((lex, dt)) if t.starts_with('"') => {
                format!("{lex}^^xsd:{}", dt.trim_end_matches('>'))
            }
            _ => t.to_owned(),
        }
    };
    let mut last = "";
    for (s, p, o) in &st {
        if s == last {
            doc.push_str(" ;\n    ");
        } else {
            if !last.is_empty() {
                doc.push_str(" .\n");
            }
            doc.push_str(s);
            doc.push(' ');
            last = s;
        }
        doc.push_str(&short(p));
        doc.push(' ');
        doc.push_str(&short(o));
    }
    doc.push_str(" .\n");
    doc
}

// ---------------------------------------------------------------------------------------------
// Local processes

/// User + system CPU seconds and resident memory (KiB) of a process, from /proc.
fn proc_sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux configuration this runs on.
    Some((ticks / 100.0, rss))
}

/// The process listening on TCP `port` on this host, via /proc/net/tcp{,6} and /proc/*/fd.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.to_string_lossy() == *i)
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The API port of a node URL on this host, if it is local.
fn local_port(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    matches!(host, "127.0.0.1" | "localhost" | "0.0.0.0" | "::1").then_some(port)
}

// ---------------------------------------------------------------------------------------------
// Report

/// Resource use of one node during the submission window.
#[derive(Debug, Clone, Serialize)]
pub struct NodeUsage {
    pub node: String,
    pub pid: Option<u32>,
    /// Average CPU use over the submission window, percent of one core.
    pub cpu_percent: Option<f64>,
    pub rss_max_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// Final height at the end of the run.
    pub final_height: Option<u64>,
}

/// Submit → final latency percentiles, seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub nodes: usize,
    pub mode: &'static str,
    pub target_rate: Option<f64>,
    pub duration_s: f64,
    pub triples_per_tx: usize,
    pub format: &'static str,
    pub submitted: u64,
    pub accepted: u64,
    /// 503 answers: the pool is full (or the node is not ready).
    pub rejected_503: u64,
    /// Other 4xx answers.
    pub rejected_other: u64,
    /// Connection failures and 5xx answers.
    pub errors: u64,
    /// Open-loop arrivals not sent because --concurrency requests were in flight.
    pub client_saturated: u64,
    pub final_txs: u64,
    pub not_final: u64,
    pub offered_tps: f64,
    pub accepted_tps: f64,
    /// Final transactions per second, from the first submission to the last finality seen.
    pub final_tps: f64,
    pub final_triples_per_s: f64,
    pub latency_s: Latency,
    pub node_usage: Vec<NodeUsage>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Run

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    accepted: AtomicU64,
    busy: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    saturated: AtomicU64,
}

/// Accepted transactions not yet seen final: tx id → (sent, node index).
type Pending = Mutex<HashMap<String, (Instant, usize)>>;

struct Shared {
    http: reqwest::Client,
    nodes: Vec<String>,
    token: Option<String>,
    content_type: &'static str,
    counters: Counters,
    pending: Pending,
    /// Latency of every transaction seen final, seconds, and when the last was seen.
    finals: Mutex<(Vec<f64>, Option<Instant>)>,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    /// Sends one transaction and records the answer; for a 503, returns its `Retry-After`.
    async fn submit(&self, node: usize, body: String) -> Option<Duration> {
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .post(format!("{}/api/transactions", self.nodes[node]))
            .header(reqwest::header::CONTENT_TYPE, self.content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let sent = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.note_error(format!("{}: {e}", self.nodes[node]));
                return None;
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::ACCEPTED {
            let id = resp
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("tx_id").and_then(Value::as_str).map(str::to_owned));
            match id {
                Some(id) => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut p) = self.pending.lock() {
                        p.insert(id, (sent, node));
                    }
                }
                None => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.note_error("a 202 answer without tx_id".into());
                }
            }
        } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            self.counters.busy.fetch_add(1, Ordering::Relaxed);
            return resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs.min(5)));
        } else if status.is_client_error() {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            let text = resp.text().await.unwrap_or_default();
            self.note_error(format!("{} answered {status}: {text}", self.nodes[node]));
        } else {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            self.note_error(format!("{} answered {status}", self.nodes[node]));
        }
        None
    }

    fn note_error(&self, e: String) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.chars().take(300).collect());
        }
    }

    async fn get_json(&self, url: String) -> anyhow::Result<Value> {
        let resp = self.http.get(&url).send().await?;
        if !resp.status().is_success() {
            bail!("{url} answered {}", resp.status());
        }
        Ok(resp.json::<Value>().await?)
    }

    async fn final_height(&self, node: usize) -> anyhow::Result<u64> {
        let status = self
            .get_json(format!("{}/api/status", self.nodes[node]))
            .await?;
        status
            .get("finalized_height")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                anyhow!(
                    "{} has no finalized_height in /api/status",
                    self.nodes[node]
                )
            })
    }

    /// Follows one node's final chain, resolving the transactions submitted to it.
    async fn follow(
        self: Arc<Self>,
        node: usize,
        mut next: u64,
        poll: Duration,
        stop: Arc<AtomicBool>,
    ) {
        loop {
            tokio::time::sleep(poll).await;
            let url = format!(
                "{}/api/blockchain/dump?from={next}&limit=256",
                self.nodes[node]
            );
            let Ok(Value::Array(blocks)) = self.get_json(url).await else {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            };
            let seen = Instant::now();
            let mut done = Vec::new();
            if let Ok(mut p) = self.pending.lock() {
                for b in &blocks {
                    if let Some(h) = b.get("height").and_then(Value::as_u64) {
                        next = next.max(h + 1);
                    }
                    for id in b
                        .get("transactions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if p.get(id).is_some_and(|(_, n)| *n == node)
                            && let Some((sent, _)) = p.remove(id)
                        {
                            done.push(seen.duration_since(sent).as_secs_f64());
                        }
                    }
                }
            }
            if !done.is_empty()
                && let Ok(mut f) = self.finals.lock()
            {
                f.0.extend(done);
                f.1 = Some(seen);
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.nodes.is_empty() {
        bail!("give at least one --node");
    }
    if args.triples < 1 {
        bail!("--triples must be at least 1");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be 0 (as fast as possible) or a positive number of tx/s");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(run_async(args))?;
    if args.json {
        crate::output::print_json(&report)?;
    } else {
        crate::output::emit(&text_report(&report))?;
    }
    Ok(())
}

async fn run_async(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let nodes: Vec<String> = args
        .nodes
        .iter()
        .map(|n| {
            let n = n.trim().trim_end_matches('/');
            if n.contains("://") {
                n.to_owned()
            } else {
                format!("http://{n}")
            }
        })
        .collect();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency.max(8))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    let shared = Arc::new(Shared {
        http,
        token: args
            .token
            .token
            .clone()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        content_type: args.format.content_type(),
        counters: Counters::default(),
        pending: Mutex::new(HashMap::new()),
        finals: Mutex::new((Vec::new(), None)),
        last_error: Mutex::new(None),
        nodes: nodes.clone(),
    });

    let mut starts = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        starts.push(
            shared
                .final_height(i)
                .await
                .with_context(|| format!("cannot read the status of {node}"))?,
        );
    }
    let pids: Vec<Option<u32>> = (0..nodes.len())
        .map(|i| {
            args.pids
                .get(i)
                .copied()
                .or_else(|| local_port(&nodes[i]).and_then(pid_listening_on))
        })
        .collect();

    let stop_follow = Arc::new(AtomicBool::new(false));
    let mut followers = Vec::new();
    for (i, &h) in starts.iter().enumerate() {
        followers.push(tokio::spawn(shared.clone().follow(
            i,
            h + 1,
            args.poll,
            stop_follow.clone(),
        )));
    }

    // CPU and RSS of local nodes, sampled while submitting.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let pids = pids.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let first: Vec<Option<(f64, u64)>> =
                pids.iter().map(|p| p.and_then(proc_sample)).collect();
            let started = Instant::now();
            let mut max_rss: Vec<u64> = first.iter().map(|s| s.map_or(0, |s| s.1)).collect();
            let mut last = first.clone();
            while sampling.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                for (i, p) in pids.iter().enumerate() {
                    if let Some(s) = p.and_then(proc_sample) {
                        max_rss[i] = max_rss[i].max(s.1);
                        last[i] = Some(s);
                    }
                }
            }
            let wall = started.elapsed().as_secs_f64().max(1e-3);
            (0..pids.len())
                .map(|i| match (first[i], last[i]) {
                    (Some(a), Some(b)) => (
                        Some((b.0 - a.0) / wall * 100.0),
                        Some(max_rss[i]),
                        Some(b.1),
                    ),
                    _ => (None, None, None),
                })
                .collect::<Vec<_>>()
        })
    };

    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let format = args.format.rdf();
    let triples = args.triples;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let end = started + args.duration;
    let counter = Arc::new(AtomicU64::new(0));
    if args.rate > 0.0 {
        // Open loop: arrivals on a schedule, checked every millisecond or so.
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now >= end {
                break;
            }
            let due = (now.duration_since(started).as_secs_f64() * args.rate) as u64;
            while sent < due {
                sent += 1;
                let Ok(permit) = sem.clone().try_acquire_owned() else {
                    shared.counters.saturated.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let node = (n % nodes.len() as u64) as usize;
                let body = document(run_id, n, triples, format);
                let s = shared.clone();
                tokio::spawn(async move {
                    // Open loop: arrivals keep their schedule whatever the answer.
                    let _ = s.submit(node, body).await;
                    drop(permit);
                });
            }
        }
    } else {
        // Closed loop: each worker sends its next request when the last is answered.
        let mut workers = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let s = shared.clone();
            let counter = counter.clone();
            let count = nodes.len() as u64;
            workers.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let retry = s
                        .submit((n % count) as usize, document(run_id, n, triples, format))
                        .await;
                    if let Some(wait) = retry {
                        tokio::time::sleep_until((Instant::now() + wait).min(end).into()).await;
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    }
    // Requests still in flight finish before the window closes.
    let _ = sem.acquire_many(args.concurrency.max(1) as u32).await;
    let window = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let usage = sampler.await.unwrap_or_default();

    // Drain: wait for the accepted transactions to turn final.
    let drain_end = Instant::now() + args.drain;
    while Instant::now() < drain_end {
        if shared.pending.lock().map_or(0, |p| p.len()) == 0 {
            break;
        }
        tokio::time::sleep(args.poll).await;
    }
    stop_follow.store(true, Ordering::Relaxed);
    for f in followers {
        let _ = f.await;
    }

    let c = &shared.counters;
    let (mut lat, last_final) = shared
        .finals
        .lock()
        .map(|f| (f.0.clone(), f.1))
        .unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let not_final = shared.pending.lock().map_or(0, |p| p.len()) as u64;
    let final_txs = lat.len() as u64;
    let span = last_final
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(window)
        .max(1e-3);
    let mut node_usage = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (cpu, rss_max, rss_end) = usage.get(i).copied().unwrap_or((None, None, None));
        node_usage.push(NodeUsage {
            node: node.clone(),
            pid: pids[i],
            cpu_percent: cpu,
            rss_max_mib: rss_max.map(|k| k as f64 / 1024.0),
            rss_end_mib: rss_end.map(|k| k as f64 / 1024.0),
            final_height: shared.final_height(i).await.ok(),
        });
    }
    if let Some(e) = shared.last_error.lock().ok().and_then(|e| e.clone()) {
        eprintln!("provchain bench: last error: {e}");
    }
    let submitted = c.submitted.load(Ordering::Relaxed);
    let accepted = c.accepted.load(Ordering::Relaxed);
    Ok(BenchReport {
        nodes: nodes.len(),
        mode: if args.rate > 0.0 {
            "open-loop"
        } else {
            "closed-loop"
        },
        target_rate: (args.rate > 0.0).then_some(args.rate),
        duration_s: window,
        triples_per_tx: triples,
        format: format.name(),
        submitted,
        accepted,
        rejected_503: c.busy.load(Ordering::Relaxed),
        rejected_other: c.rejected.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        client_saturated: c.saturated.load(Ordering::Relaxed),
        final_txs,
        not_final,
        offered_tps: (submitted + c.saturated.load(Ordering::Relaxed)) as f64 / window,
        accepted_tps: accepted as f64 / window,
        final_tps: final_txs as f64 / span,
        final_triples_per_s: (final_txs * triples as u64) as f64 / span,
        latency_s: Latency {
            p50: percentile(&lat, 0.50),
            p95: percentile(&lat, 0.95),
            p99: percentile(&lat, 0.99),
            max: percentile(&lat, 1.0),
        },
        node_usage,
    })
}

fn text_report(r: &BenchReport) -> String {
    let mut out = String::new();
    let mode = match r.target_rate {
        Some(rate) => format!("open loop at {rate} tx/s"),
        None => "closed loop".to_owned(),
    };
    out.push_str(&format!(
        "provchain bench: {} node(s), {mode}, {:.1} s, {} triples/tx ({})\n",
        r.nodes, r.duration_s, r.triples_per_tx, r.format
    ));
    out.push_str(&format!(
        "answers:    {} submitted, {} accepted, {} pool full (503), {} rejected, {} errors, {} not sent (client saturated)\n",
        r.submitted, r.accepted, r.rejected_503, r.rejected_other, r.errors, r.client_saturated
    ));
    out.push_str(&format!(
        "final:      {} of {} accepted ({} not final after the drain)\n",
        r.final_txs, r.accepted, r.not_final
    ));
    out.push_str(&format!(
        "throughput: {:.0} final tx/s, {:.0} triples/s (offered {:.0} tx/s, accepted {:.0} tx/s)\n",
        r.final_tps, r.final_triples_per_s, r.offered_tps, r.accepted_tps
    ));
    let l = &r.latency_s;
    out.push_str(&format!(
        "latency:    submit -> final p50 {:.3} s, p95 {:.3} s, p99 {:.3} s, max {:.3} s\n",
        l.p50, l.p95, l.p99, l.max
    ));
    let rows: Vec<Vec<String>> = r
        .node_usage
        .iter()
        .map(|u| {
            let f = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.1}{unit}"));
            vec![
                u.node.clone(),
                u.pid.map_or("-".into(), |p| p.to_string()),
                f(u.cpu_percent, "%"),
                f(u.rss_max_mib, " MiB"),
                f(u.rss_end_mib, " MiB"),
                u.final_height.map_or("-".into(), |h| h.to_string()),
            ]
        })
        .collect();
    out.push_str(&crate::output::table(
        &["NODE", "PID", "CPU", "RSS MAX", "RSS END", "FINAL HEIGHT"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_have_the_asked_number_of_statements_and_parse() {
        for format in [RdfFormat::Turtle, RdfFormat::NTriples] {
            for triples in [1, 8, 10, 25] {
                for n in [0, 1, 2, 3, 100, 12_345] {
                    let doc = document(7, n, triples, format);
                    let quads = provchain_storage::rdf::parse(format, &doc, "t")
                        .unwrap_or_else(|e| panic!("{format:?} {n}: {e}\n{doc}"));
                    assert_eq!(quads.len(), triples, "{doc}");
                }
            }
        }
        // Fresh IRIs per run and per event.
        assert_ne!(
            document(1, 5, 10, RdfFormat::Turtle),
            document(2, 5, 10, RdfFormat::Turtle)
        );
        assert_ne!(
            document(1, 5, 10, RdfFormat::Turtle),
            document(1, 6, 10, RdfFormat::Turtle)
        );
    }

    #[test]
    fn local_ports_are_found_in_urls() {
        assert_eq!(local_port("http://127.0.0.1:8081"), Some(8081));
        assert_eq!(local_port("http://localhost:8080/"), Some(8080));
        assert_eq!(local_port("http://[::1]:9000"), Some(9000));
        assert_eq!(local_port("http://node1:8080"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let (cpu, rss) = proc_sample(std::process::id()).expect("own /proc entry");
        assert!(cpu >= 0.0);
        assert!(rss > 0);
    }

    #[test]
    fn a_listening_socket_is_traced_to_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
    }
}
