//! A three-authority network started from `provchain testnet init` output: the nodes find each
//! other, `provchain peers` lists the two others on each, and the chain finalizes.

mod common;

use std::time::Duration;

use common::{NodeProc, cli, free_port_run, wait_for};
use serde_json::Value;

#[test]
fn three_nodes_from_testnet_init_connect_and_finalize() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("net");
    let (p2p, api, metrics) = (free_port_run(3), free_port_run(3), free_port_run(3));
    let plans = cli(&[
        "testnet",
        "init",
        "--nodes",
        "3",
        "--out",
        out.to_str().expect("utf8"),
        "--base-port",
        &p2p.to_string(),
        "--api-base-port",
        &api.to_string(),
        "--metrics-base-port",
        &metrics.to_string(),
        "--block-interval",
        "500ms",
        "--json",
    ])
    .json();
    let plans = plans.as_array().expect("array").clone();

    let nodes: Vec<NodeProc> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let args = [
                "--config".to_owned(),
                p["config"].as_str().expect("config").to_owned(),
            ];
            let url = format!("http://127.0.0.1:{}", api + i as u16);
            NodeProc::spawn(&args, &[], &out.join(format!("node{}", i + 1)), url)
        })
        .collect();

    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<&str> = plans
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p["peer_id"].as_str().expect("id"))
            .collect();
        let peers = wait_for(
            &format!("node{} to see both others", i + 1),
            Duration::from_secs(30),
            || {
                let run = common::cli(&["peers", "--node", &node.url, "--json"]);
                let v: Value = serde_json::from_str(&run.stdout).ok()?;
                let ids: Vec<String> = v
                    .as_array()?
                    .iter()
                    .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                    .collect();
                others
                    .iter()
                    .all(|o| ids.iter().any(|id| id == o))
                    .then_some(v)
            },
        );
        assert!(
            peers
                .as_array()
                .is_some_and(|a| a.iter().all(|p| p["is_authority"] == true)),
            "{peers}"
        );
        let table = cli(&["peers", "--node", &node.url]).ok().to_owned();
        assert!(others.iter().all(|o| table.contains(o)), "{table}");
        assert!(table.contains("yes"), "{table}");
    }
    for node in &nodes {
        wait_for("finality on every node", Duration::from_secs(30), || {
            let s = cli(&["status", "--node", &node.url, "--json"]).json();
            (s["finalized_height"].as_u64()? >= 3).then_some(())
        });
    }
}
