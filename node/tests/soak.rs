//! Soak: a three-authority network of real `provchaind` processes under moderate load for a
//! fixed time, sampling memory (VmRSS), disk use of each data dir and open file descriptors
//! every minute. Ignored by default (it runs for minutes); the documented run:
//!
//! ```sh
//! PROVCHAIN_SOAK_MINUTES=10 PROVCHAIN_SOAK_TPS=20 PROVCHAIN_SOAK_DIR=/var/tmp/soak \
//!   cargo test --release -p provchain-node --test soak -- --ignored --nocapture
//! ```
//!
//! It asserts what must hold at any duration — every node keeps finalizing, all agree on the
//! final chain, the integrity check passes, every sampled transaction is final — and prints the
//! figures recorded in docs/RELIABILITY.md.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    disk_kib: u64,
    fds: usize,
    final_height: u64,
}

/// Panics with the exit status and the end of the log if the node is gone.
fn check_alive(n: &mut NodeProc) {
    if let Ok(Some(status)) = n.child.try_wait() {
        let log = n.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "node on {} exited with {status}; log tail:\n{}",
            n.http,
            tail.join("\n")
        );
    }
}

async fn sample(n: &mut NodeProc) -> Sample {
    check_alive(n);
    let pid = n.child.id();
    Sample {
        rss_kib: proc_status_kib(pid, "VmRSS:"),
        disk_kib: dir_bytes(&n.data_dir) / 1024,
        fds: open_fds(pid),
        final_height: n.final_height().await,
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs for minutes: PROVCHAIN_SOAK_MINUTES (default 10)"]
async fn three_authorities_under_moderate_load() {
    let minutes = env_u64("PROVCHAIN_SOAK_MINUTES", 10);
    let tps = env_u64("PROVCHAIN_SOAK_TPS", 20).max(1);
    // PROVCHAIN_SOAK_DIR: somewhere long runs are safe from /tmp cleaners.
    let dir = match std::env::var_os("PROVCHAIN_SOAK_DIR") {
        Some(base) => {
            std::fs::create_dir_all(&base).expect("soak dir");
            tempfile::tempdir_in(base)
        }
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let spec = |key, peers| NetNodeSpec {
        key,
        authority: true,
        authorities: 3,
        peers,
        allowed: &[],
        extra_toml: "",
    };
    let mut n1 = NodeProc::net(dir.path(), &spec(1, &[]));
    n1.wait_healthy().await;
    let seed = vec![n1.p2p_addr()];
    let mut nodes = vec![
        n1,
        NodeProc::net(dir.path(), &spec(2, &seed)),
        NodeProc::net(dir.path(), &spec(3, &seed)),
    ];
    for n in &mut nodes {
        n.wait_healthy().await;
    }
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<String> = (1..=3u32)
            .filter(|k| *k != i as u32 + 1)
            .map(dev_peer_id)
            .collect();
        wait_for("full mesh", Duration::from_secs(60), || async {
            let peers = n.peer_ids().await;
            others.iter().all(|o| peers.contains(o)).then_some(())
        })
        .await;
    }
    nodes[0].wait_final_height(2, Duration::from_secs(60)).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let urls: Vec<String> = nodes.iter().map(|n| n.http.clone()).collect();
    let total = Duration::from_secs(minutes * 60);
    let started = Instant::now();
    let mut samples: Vec<(u64, Vec<Sample>)> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let (mut accepted, mut refused, mut queries) = (0u64, 0u64, 0u64);
    let mut tracked = Vec::new();
    let mut seq = 0u64;
    let period = Duration::from_millis(1000 / tps);
    while started.elapsed() < total {
        if started.elapsed() >= next_sample {
            let mut row = Vec::new();
            for n in &mut nodes {
                row.push(sample(n).await);
            }
            eprintln!(
                "t={:>4}s {}",
                started.elapsed().as_secs(),
                row.iter()
                    .map(|s| format!(
                        "rss={}MiB disk={}MiB fds={} final={}",
                        s.rss_kib / 1024,
                        s.disk_kib / 1024,
                        s.fds,
                        s.final_height
                    ))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            samples.push((started.elapsed().as_secs(), row));
            next_sample += Duration::from_secs(60);
        }
        seq += 1;
        // A small provenance record (six statements) to a rotating node.
        let doc = format!(
            "@prefix ex: <http://soak.example/> .\n@prefix prov: <http://www.w3.org/ns/prov#> .\n\
             ex:lot{seq} a prov:Entity ; ex:weightKg {w} ; ex:origin ex:farm{f} ;\n  \
             prov:wasGeneratedBy ex:harvest{seq} .\nex:harvest{seq} a prov:Activity ; \
             prov:wasAssociatedWith ex:farm{f} .\n",
            w = seq % 1000,
            f = seq % 17
        );
        let url = &urls[(seq as usize) % urls.len()];
        let r = client
            .post(format!("{url}/api/transactions"))
            .header("Content-Type", "text/turtle")
            .body(doc)
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 202 => {
                accepted += 1;
                if seq.is_multiple_of(500)
                    && let Ok(v) = r.json::<serde_json::Value>().await
                    && let Some(id) = v["tx_id"].as_str()
                {
                    tracked.push(id.to_owned());
                }
            }
            _ => refused += 1,
        }
        // A provenance query every 50 submissions.
        if seq.is_multiple_of(50) {
            let q = format!(
                "PREFIX prov: <http://www.w3.org/ns/prov#> SELECT ?a WHERE {{ \
                 <http://soak.example/lot{}> prov:wasGeneratedBy ?a }}",
                seq.saturating_sub(100)
            );
            let qs = serde_urlencoded::to_string([("query", q)]).expect("encode");
            if client
                .get(format!("{url}/sparql?{qs}"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                queries += 1;
            }
        }
        tokio::time::sleep(period).await;
    }
    let mut end = Vec::new();
    for n in &mut nodes {
        end.push(sample(n).await);
    }
    samples.push((started.elapsed().as_secs(), end.clone()));

    for id in &tracked {
        for n in &nodes {
            n.wait_final(id, Duration::from_secs(60)).await;
        }
    }
    let h = end.iter().map(|s| s.final_height).min().unwrap_or(0);
    let reference = nodes[0].final_hashes(h.saturating_sub(100), 101).await;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            n.final_hashes(h.saturating_sub(100), 101).await,
            reference,
            "node{} diverged",
            i + 1
        );
        let (code, report) = n.get("/api/integrity/validate").await;
        assert_eq!(
            (code, &report["ok"]),
            (200, &serde_json::Value::Bool(true)),
            "node{}: {report}",
            i + 1
        );
    }
    let first = &samples[1.min(samples.len() - 1)].1;
    eprintln!(
        "soak: {minutes} min, {accepted} transactions accepted ({refused} refused), {queries} \
         queries, {} tracked transactions final on all nodes, final height {h}",
        tracked.len()
    );
    for (i, (a, b)) in first.iter().zip(&end).enumerate() {
        eprintln!(
            "node{}: after 1 min -> end: RSS {} -> {} MiB, data dir {} -> {} MiB, open fds {} -> {}, \
             peak RSS {} MiB",
            i + 1,
            a.rss_kib / 1024,
            b.rss_kib / 1024,
            a.disk_kib / 1024,
            b.disk_kib / 1024,
            a.fds,
            b.fds,
            proc_status_kib(nodes[i].child.id(), "VmHWM:") / 1024
        );
        assert!(
            b.final_height > a.final_height,
            "node{} stopped finalizing",
            i + 1
        );
    }
}
