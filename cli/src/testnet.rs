//! `testnet init`: fresh keys and `provchaind` configs for N local authorities.
//!
//! Layout under `--out DIR`: `nodeI/node.key` (mode 0600) and `nodeI.toml` for I = 1..N, plus
//! `README.txt`. Every config lists all N public keys in the same order (the genesis), node 1
//! is the seed peer of the others, and ports count up from the base ports. Paths in the configs
//! are absolute so the nodes can be started from any directory.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use provchain_node::config::Config;
use serde::Serialize;

use crate::keys::{KeyInfo, write_new_key};
use crate::output;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Number of authorities.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub nodes: u16,
    /// Output directory (must be empty or absent unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty directory, replacing earlier keys and configs.
    #[arg(long)]
    pub force: bool,
    /// Slot length (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub block_interval: Duration,
    /// P2P port of node 1; node I listens on base + I - 1.
    #[arg(long, default_value_t = 30333)]
    pub base_port: u16,
    /// HTTP API port of node 1.
    #[arg(long, default_value_t = 8080)]
    pub api_base_port: u16,
    /// Metrics port of node 1.
    #[arg(long, default_value_t = 9090)]
    pub metrics_base_port: u16,
    /// Network id (part of genesis).
    #[arg(long, default_value = "provchain-local")]
    pub network_id: String,
    /// Address every node binds and dials.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Print the generated nodes as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One generated node.
#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    pub node_id: String,
    pub public_key: String,
    pub peer_id: String,
    pub config: String,
    pub key_file: String,
    pub data_dir: String,
    pub p2p_port: u16,
    pub api_port: u16,
    pub metrics_port: u16,
}

fn port(base: u16, i: u16, flag: &str) -> anyhow::Result<u16> {
    base.checked_add(i)
        .ok_or_else(|| anyhow!("{flag} {base} plus {i} exceeds 65535; choose a lower {flag}"))
}

/// A TOML basic string (quotes and escapes).
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn prepare_dir(out: &Path, force: bool) -> anyhow::Result<PathBuf> {
    if out.exists() {
        if !out.is_dir() {
            bail!("{} exists and is not a directory", out.display());
        }
        let non_empty = std::fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_some();
        if non_empty && !force {
            bail!(
                "{} is not empty; choose an empty directory or pass --force to overwrite",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::canonicalize(out).with_context(|| format!("cannot resolve {}", out.display()))
}

/// The seed address of node 1 as the others dial it.
fn seed_addr(host: &str, port: u16, peer_id: &str) -> String {
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => format!("/ip4/{ip}/tcp/{port}/p2p/{peer_id}"),
        Err(_) => format!("{host}:{port}"),
    }
}

pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    if args.block_interval.is_zero() {
        bail!("--block-interval must be greater than zero");
    }
    if args.network_id.trim().is_empty() {
        bail!("--network-id must not be empty");
    }
    if args.network_id == provchain_node::DEV_NETWORK_ID {
        bail!(
            "--network-id `{}` is reserved for --dev chains; choose another",
            provchain_node::DEV_NETWORK_ID
        );
    }
    let n = args.nodes;
    for (base, flag) in [
        (args.base_port, "--base-port"),
        (args.api_base_port, "--api-base-port"),
        (args.metrics_base_port, "--metrics-base-port"),
    ] {
        port(base, n - 1, flag)?;
    }
    let dir = prepare_dir(&args.out, args.force)?;

    let mut plans = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let node_dir = dir.join(format!("node{i}"));
        let key_file = node_dir.join("node.key");
        if node_dir.join("db").exists() {
            eprintln!(
                "warning: {} holds a database made with the old keys; delete it before starting node{i}",
                node_dir.join("db").display()
            );
        }
        let key = write_new_key(&key_file, args.force)?;
        let info = KeyInfo::new(&key, &key_file);
        plans.push(NodePlan {
            node_id: format!("node{i}"),
            public_key: info.public_key,
            peer_id: info.peer_id,
            config: dir.join(format!("node{i}.toml")).display().to_string(),
            key_file: key_file.display().to_string(),
            data_dir: node_dir.display().to_string(),
            p2p_port: port(args.base_port, i - 1, "--base-port")?,
            api_port: port(args.api_base_port, i - 1, "--api-base-port")?,
            metrics_port: port(args.metrics_base_port, i - 1, "--metrics-base-port")?,
        });
    }
    let authority_keys: Vec<String> = plans.iter().map(|p| q(&p.public_key)).collect();
    let seed = seed_addr(&args.host, plans[0].p2p_port, &plans[0].peer_id);
    let interval = humantime::format_duration(args.block_interval).to_string();
    for (i, p) in plans.iter().enumerate() {
        let known_peers = if i == 0 {
            "[]".to_owned()
        } else {
            format!("[{}]", q(&seed))
        };
        let text = format!(
            "# {node_id} of a {n}-authority local testnet, generated by `provchain testnet init`.\n\
             # Start: provchaind --config {config}\n\
             node_id = {node_id_q}\n\
             \n\
             [network]\n\
             network_id = {network_id}\n\
             listen_port = {p2p}\n\
             bind_address = {host}\n\
             known_peers = {known_peers}\n\
             \n\
             [consensus]\n\
             is_authority = true\n\
             # The genesis authorities, in slot order: identical on every node.\n\
             authority_keys = [\n    {keys},\n]\n\
             block_interval = {interval}\n\
             key_file = {key_file}\n\
             \n\
             [storage]\n\
             data_dir = {data_dir}\n\
             \n\
             [web]\n\
             host = {host}\n\
             port = {api}\n\
             \n\
             [metrics]\n\
             host = {host}\n\
             port = {metrics}\n",
            node_id = p.node_id,
            config = p.config,
            node_id_q = q(&p.node_id),
            network_id = q(&args.network_id),
            p2p = p.p2p_port,
            host = q(&args.host),
            keys = authority_keys.join(",\n    "),
            interval = q(&interval),
            key_file = q(&p.key_file),
            data_dir = q(&p.data_dir),
            api = p.api_port,
            metrics = p.metrics_port,
        );
        // Catch a config provchaind would refuse here, not at the operator's first start.
        let parsed: Config = toml::from_str(&text)
            .map_err(|e| anyhow!("generated config for {} is invalid: {e}", p.node_id))?;
        parsed
            .validate()
            .map_err(|e| anyhow!("generated config for {} is invalid: {e}", p.node_id))?;
        std::fs::write(&p.config, text).with_context(|| format!("cannot write {}", p.config))?;
    }
    let readme = readme(&plans, args, &interval);
    std::fs::write(dir.join("README.txt"), readme)
        .with_context(|| format!("cannot write {}", dir.join("README.txt").display()))?;
    eprintln!(
        "wrote {n} node keys and configs to {}; see {}",
        dir.display(),
        dir.join("README.txt").display()
    );
    if args.json {
        return output::print_json(&plans);
    }
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            vec![
                p.node_id.clone(),
                p.peer_id.clone(),
                p.p2p_port.to_string(),
                format!("http://{}:{}", args.host, p.api_port),
                p.config.clone(),
            ]
        })
        .collect();
    output::emit(&output::table(
        &["NODE", "PEER ID", "P2P", "API", "CONFIG"],
        &rows,
    ))
}

fn readme(plans: &[NodePlan], args: &InitArgs, interval: &str) -> String {
    let (network_id, host) = (&args.network_id, &args.host);
    let mut s = format!(
        "ProvChain local testnet `{network_id}`: {} authorities, block interval {interval}.\n\
         Generated by `provchain testnet init`. The keys in node*/node.key are secret (mode 0600).\n\n\
         Start each node in its own terminal (or append `&`):\n\n",
        plans.len()
    );
    for p in plans {
        s.push_str(&format!("    provchaind --config {}\n", p.config));
    }
    s.push_str("\nNode 1 is the seed peer of the others; start it first. Then check them:\n\n");
    for p in plans {
        s.push_str(&format!(
            "    provchain status --node http://{host}:{port}   # {id}, metrics on port {m}\n",
            port = p.api_port,
            id = p.node_id,
            m = p.metrics_port
        ));
    }
    s.push_str(&format!(
        "    provchain peers --node http://{host}:{}\n\n\
         Blocks become final once a majority of the authorities is up. Every node keeps its\n\
         database in its own folder (node*/db); delete those folders to start the chain afresh.\n",
        plans.first().map_or(8080, |p| p.api_port)
    ));
    s.push_str("\nAuthorities (genesis order):\n");
    for p in plans {
        s.push_str(&format!(
            "    {}  {}  {}\n",
            p.node_id, p.public_key, p.peer_id
        ));
    }
    s
}
