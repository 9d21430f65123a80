//! Test harness: runs the real `provchaind` binary on loopback with its own data dir and ports,
//! and waits for observable states with deadlines.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_provchaind");

/// A free loopback TCP port for a node to take. Ports come from below the kernel's ephemeral
/// range (32768–60999 by default), so an outgoing connection of another test cannot take the
/// port between this check and the node binding it; each port is handed out once per process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = std::process::id().wrapping_mul(7_919);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n) % SPAN) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

pub struct NodeProc {
    pub child: Child,
    pub http: String,
    pub http_port: u16,
    pub metrics_port: u16,
    pub p2p_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl NodeProc {
    /// Starts `provchaind --dev` on `data_dir` with fresh ports.
    pub fn dev(data_dir: &Path) -> Self {
        Self::spawn(data_dir, &["--dev"], &[])
    }

    pub fn spawn(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let (http_port, metrics_port, p2p_port) = (free_port(), free_port(), free_port());
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http-port".into(),
            http_port.to_string(),
            "--metrics-port".into(),
            metrics_port.to_string(),
            "--port".into(),
            p2p_port.to_string(),
        ]);
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = data_dir.with_extension("log");
        let child = launch(&args, &envs, &log);
        Self {
            child,
            http: format!("http://127.0.0.1:{http_port}"),
            http_port,
            metrics_port,
            p2p_port,
            data_dir: data_dir.to_path_buf(),
            log,
            args,
            envs,
        }
    }

    /// Starts the same node again (same data dir, ports and flags) after it stopped.
    pub fn restart(&mut self) {
        self.child = launch(&self.args, &self.envs, &self.log);
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_healthy(&mut self) {
        let url = format!("{}/health", self.http);
        let log = self.log.clone();
        let child = &mut self.child;
        wait_for("node healthy", Duration::from_secs(30), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "provchaind exited with {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.http))
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get_text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.http))
            .await
            .expect("request")
            .text()
            .await
            .unwrap_or_default()
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.http))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Submits a JSON transaction and returns its id.
    pub async fn submit(&self, data: &str) -> String {
        let body = serde_json::json!({ "data": data }).to_string();
        let (status, v) = self
            .post("/api/transactions", "application/json", body)
            .await;
        assert_eq!(status, 202, "submit failed: {v}");
        v["tx_id"].as_str().expect("tx_id").to_owned()
    }

    pub async fn wait_final(&self, tx_id: &str, deadline: Duration) -> Value {
        let path = format!("/api/transactions/{tx_id}");
        wait_for(&format!("tx {tx_id} final"), deadline, || async {
            let (code, v) = self.get(&path).await;
            (code == 200 && v["status"] == "final").then_some(v)
        })
        .await
    }

    pub async fn status(&self) -> Value {
        self.get("/api/status").await.1
    }

    /// Runs a SPARQL query through GET /sparql and returns the JSON results.
    pub async fn sparql(&self, query: &str) -> Value {
        let qs = serde_urlencoded::to_string([("query", query)]).expect("encode query");
        let r = reqwest::get(format!("{}/sparql?{qs}", self.http))
            .await
            .expect("sparql request");
        assert_eq!(r.status().as_u16(), 200, "sparql failed for {query}");
        r.json().await.expect("sparql json")
    }

    /// Counter `name` with label `reason`, 0 while nothing was counted under that reason.
    pub async fn counter(&self, name: &str, reason: &str) -> f64 {
        self.metric(&format!("{name}{{reason=\"{reason}\"}}"))
            .await
            .unwrap_or(0.0)
    }

    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get_text("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.keep_log();
        }
    }
}

impl NodeProc {
    /// A failing test deletes its data dirs: the node's log is copied out of them, and its
    /// last lines printed with the failure.
    fn keep_log(&self) {
        let text = self.log_text();
        let kept = std::env::temp_dir().join("provchain-failed-tests");
        let name = format!(
            "{}-{}-{}.log",
            self.log.file_stem().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            self.http_port
        );
        let saved = std::fs::create_dir_all(&kept)
            .and_then(|()| std::fs::write(kept.join(&name), &text))
            .map(|()| kept.join(&name).display().to_string())
            .unwrap_or_else(|e| format!("not saved: {e}"));
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!(
            "--- last lines of {} (whole log: {saved})",
            self.log.display()
        );
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

fn launch(args: &[String], envs: &[(String, String)], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.env_remove("PROVCHAIN_PEERS")
        .env_remove("PROVCHAIN_CONFIG")
        .env_remove("CONFIG_FILE");
    cmd.env("RUST_LOG", "info,provchain=debug");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn provchaind")
}

/// Polls `probe` every 50 ms until it yields a value; panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An N-Triples transaction signed by development key `key`, as a peer gossips it.
pub fn signed_tx(
    key: u32,
    genesis_hash: &provchain_consensus::Hash,
    data: String,
) -> provchain_consensus::Transaction {
    let key = provchain_node::keys::dev_key(key);
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    provchain_consensus::Transaction::sign(
        provchain_consensus::TxBody {
            format: provchain_consensus::RdfFormat::NTriples,
            data: data.into(),
            submitter: key.public(),
            client: None,
            timestamp_ms,
        },
        &key,
        genesis_hash,
    )
}

/// Public keys of the deterministic development keys 1..=n.
pub fn dev_public_keys(n: u32) -> Vec<String> {
    (1..=n)
        .map(|i| provchain_node::keys::dev_key(i).public().to_hex())
        .collect()
}

pub fn dev_peer_id(i: u32) -> String {
    provchain_p2p::peer_id_of(&provchain_node::keys::dev_key(i).public()).to_string()
}

/// One node of a test network on loopback.
pub struct NetNodeSpec<'a> {
    /// Development key number (1-based).
    pub key: u32,
    pub authority: bool,
    /// Number of authorities (dev keys 1..=n).
    pub authorities: u32,
    pub peers: &'a [String],
    pub allowed: &'a [String],
    pub extra_toml: &'a str,
}

impl<'a> NetNodeSpec<'a> {
    /// The network's only authority (dev key 1), letting the `allowed` peers in.
    pub fn sole_authority(allowed: &'a [String]) -> Self {
        Self {
            key: 1,
            authority: true,
            authorities: 1,
            peers: &[],
            allowed,
            extra_toml: "",
        }
    }

    /// An observer (dev key 2) of a network whose only authority is dev key 1 (in the tests,
    /// an in-process peer), letting the `allowed` peers in.
    pub fn observer_of_one(allowed: &'a [String]) -> Self {
        Self {
            key: 2,
            authority: false,
            ..Self::sole_authority(allowed)
        }
    }
}

impl NodeProc {
    /// Starts a `provchain-testnet` node with a generated config file in `dir`.
    pub fn net(dir: &Path, spec: &NetNodeSpec<'_>) -> Self {
        let keys: Vec<String> = dev_public_keys(spec.authorities)
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect();
        let quote = |v: &[String]| {
            v.iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let toml = format!(
            "node_id = \"node{key}\"\n[network]\nnetwork_id = \"provchain-testnet\"\nbind_address = \"127.0.0.1\"\n\
             known_peers = [{peers}]\nallowed_peers = [{allowed}]\n[consensus]\nis_authority = {auth}\n\
             dev_key = {key}\nauthority_keys = [{keys}]\nblock_interval = \"1s\"\n{extra}\n",
            key = spec.key,
            peers = quote(spec.peers),
            allowed = quote(spec.allowed),
            auth = spec.authority,
            keys = keys.join(", "),
            extra = spec.extra_toml,
        );
        let data_dir = dir.join(format!("node{}", spec.key));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let cfg = dir.join(format!("node{}.toml", spec.key));
        std::fs::write(&cfg, toml).expect("config");
        Self::spawn(&data_dir, &["--config", &cfg.display().to_string()], &[])
    }

    pub fn p2p_addr(&self) -> String {
        format!("127.0.0.1:{}", self.p2p_port)
    }

    pub async fn peer_ids(&self) -> Vec<String> {
        let (_, v) = self.get("/api/peers").await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn final_height(&self) -> u64 {
        self.status().await["finalized_height"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until the final height reaches `h`.
    pub async fn wait_final_height(&self, h: u64, deadline: Duration) -> u64 {
        wait_for(
            &format!("final height {h} on {}", self.http),
            deadline,
            || async {
                let f = self.final_height().await;
                (f >= h).then_some(f)
            },
        )
        .await
    }

    /// The final chain's block hashes from `from` (inclusive), as the dump reports them.
    pub async fn final_hashes(&self, from: u64, limit: u64) -> Vec<String> {
        let (_, v) = self
            .get(&format!("/api/blockchain/dump?from={from}&limit={limit}"))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b["hash"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn block(&self, height: u64) -> Value {
        self.get(&format!("/api/blocks/{height}")).await.1
    }
}

/// An in-process libp2p peer with dev key `key`, seeded with `node`'s address and treating
/// `authorities` as the authorities, connected to `node` and subscribed to its block topic.
/// Returns its handle, its events and the network's genesis hash.
pub async fn adversary(
    key: u32,
    node: &NodeProc,
    authorities: Vec<provchain_consensus::PublicKey>,
) -> (
    provchain_p2p::P2pHandle,
    tokio::sync::mpsc::Receiver<provchain_p2p::P2pEvent>,
    provchain_consensus::Hash,
) {
    let status = node.status().await;
    let genesis_hash =
        provchain_consensus::Hash::from_hex(status["genesis_hash"].as_str().expect("genesis"))
            .expect("hash");
    let mut cfg = provchain_p2p::P2pConfig::new(provchain_node::keys::dev_key(key), genesis_hash);
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    cfg.bootstrap = vec![node.p2p_addr()];
    cfg.authorities = authorities;
    let (p2p, events) = provchain_p2p::spawn(cfg).await.expect("adversary swarm");
    let target: provchain_p2p::PeerId = node.status().await["peer_id"]
        .as_str()
        .expect("peer id")
        .parse()
        .expect("peer id");
    wait_for(
        "adversary connected to the node",
        Duration::from_secs(60),
        || async {
            let s = p2p.stats().await;
            let connected = p2p.peers().await.iter().any(|p| p.peer_id == target);
            (connected && s.block_topic_peers >= 1).then_some(())
        },
    )
    .await;
    (p2p, events, genesis_hash)
}

/// The genesis block as the node with dev key `key` serves it over the sync protocol.
pub async fn served_genesis(
    p2p: &provchain_p2p::P2pHandle,
    key: u32,
) -> provchain_consensus::Block {
    let peer: provchain_p2p::PeerId = dev_peer_id(key).parse().expect("peer id");
    p2p.request_blocks(peer, 0, 1)
        .await
        .expect("genesis block")
        .pop()
        .expect("the node serves its genesis block")
}
