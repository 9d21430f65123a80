//! Test harness: runs the real `provchain` binary, and real `provchaind` dev nodes on loopback
//! with their own data dirs and ports; every wait has a deadline.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CLI: &str = env!("CARGO_BIN_EXE_provchain");

/// Environment variables that would leak the developer's settings into a test.
const SCRUB: &[&str] = &[
    "PROVCHAIN_NODE",
    "PROVCHAIN_TOKEN",
    "JWT_SECRET",
    "PROVCHAIN_PEERS",
    "PROVCHAIN_PORT",
    "PROVCHAIN_DATA_DIR",
    "PROVCHAIN_CONFIG",
    "CONFIG_FILE",
    "PROVCHAIN_NODE_ID",
];

/// `provchaind`, built next to `provchain` by `cargo test --workspace`.
pub fn provchaind() -> PathBuf {
    let path = Path::new(CLI).parent().expect("bin dir").join("provchaind");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bin provchaind` first (or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        &self.stdout
    }

    /// Asserts a non-zero exit with exactly one line on stderr, and returns that line.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert_ne!(self.code, 0, "expected failure, got {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got {self:#?}");
        assert!(lines[0].starts_with("provchain: "), "{self:#?}");
        lines[0]
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(CLI);
    cmd.args(args);
    for k in SCRUB {
        cmd.env_remove(k);
    }
    cmd.envs(envs.iter().copied());
    cmd
}

/// Runs `provchain ARGS` with no stdin.
pub fn cli(args: &[&str]) -> Run {
    cli_env(args, &[])
}

pub fn cli_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = command(args, envs)
        .stdin(Stdio::null())
        .output()
        .expect("run provchain");
    Run::from(out)
}

/// Runs `provchain ARGS` feeding `input` on stdin.
pub fn cli_stdin(args: &[&str], input: &str) -> Run {
    let mut child = command(args, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run provchain");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    Run::from(child.wait_with_output().expect("wait provchain"))
}

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

/// Polls `f` every 50 ms until it yields a value; panics naming `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `provchaind` process, killed when dropped.
pub struct NodeProc {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl NodeProc {
    /// `provchaind --dev` on `data_dir` with fresh ports and a short block interval.
    pub fn dev(data_dir: &Path, envs: &[(&str, &str)]) -> Self {
        let http = free_port();
        let args = [
            "--dev".to_owned(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http-port".into(),
            http.to_string(),
            "--metrics-port".into(),
            free_port().to_string(),
            "--port".into(),
            free_port().to_string(),
            "--block-interval".into(),
            "250ms".into(),
        ];
        Self::spawn(&args, envs, data_dir, format!("http://127.0.0.1:{http}"))
    }

    /// `provchaind ARGS`, logging next to `data_dir`.
    pub fn spawn(args: &[String], envs: &[(&str, &str)], data_dir: &Path, url: String) -> Self {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(provchaind());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for k in SCRUB {
            cmd.env_remove(k);
        }
        cmd.env("RUST_LOG", "info").envs(envs.iter().copied());
        let child = cmd.spawn().expect("start provchaind");
        let mut node = Self {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        node.wait_healthy();
        node
    }

    fn wait_healthy(&mut self) {
        let url = format!("{}/health", self.url);
        let client = http();
        let (child, log) = (&mut self.child, &self.log);
        wait_for("provchaind /health", Duration::from_secs(30), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "provchaind exited with {st}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            client
                .get(&url)
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        });
    }

    pub fn get(&self, path: &str) -> Value {
        let r = http()
            .get(format!("{}{path}", self.url))
            .send()
            .expect("request");
        r.json().expect("json")
    }

    /// Waits until the final height reaches `h`.
    pub fn wait_final_height(&self, h: u64) {
        wait_for(
            &format!("final height {h}"),
            Duration::from_secs(30),
            || (self.get("/api/status")["finalized_height"].as_u64()? >= h).then_some(()),
        );
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(st.success());
        let child = &mut self.child;
        let status = wait_for(
            "provchaind to exit after SIGTERM",
            Duration::from_secs(20),
            || child.try_wait().ok().flatten(),
        );
        assert!(
            status.success(),
            "provchaind exited with {status}: {}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Mode bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// `n` consecutive free loopback ports (for `testnet init`'s base ports); retries until a run
/// of free ports is found.
pub fn free_port_run(n: u16) -> u16 {
    wait_for("a run of free ports", Duration::from_secs(10), || {
        // Consecutive ports handed out by `free_port` (each once), all still free.
        let base = free_port();
        let rest: Vec<u16> = (1..n).map(|_| free_port()).collect();
        let consecutive = rest
            .iter()
            .enumerate()
            .all(|(i, p)| *p == base + 1 + i as u16);
        consecutive.then_some(base)
    })
}
