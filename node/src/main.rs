//! `provchaind`: parses flags, loads the configuration, runs the node until SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use provchain_node::config::{self, Overrides};

/// jemalloc instead of glibc malloc: under load glibc's per-thread arenas kept 2-3x the live
/// heap and never gave it back (a dev node at 1,000 tx/s: 490 MiB and staying, against
/// ~190 MiB falling back once idle with jemalloc; both ~20 MiB idle). docs/PERFORMANCE.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// ProvChain node: a permissioned proof-of-authority chain recording provenance as RDF.
#[derive(Parser, Debug)]
#[command(name = "provchaind", version, about)]
struct Args {
    /// TOML configuration file (also CONFIG_FILE or PROVCHAIN_CONFIG).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Development mode: a single-authority chain with a key created in the data dir
    /// (default ./data/dev).
    #[arg(long)]
    dev: bool,
    /// Data directory (storage.data_dir; env PROVCHAIN_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// P2P listen port (network.listen_port; env PROVCHAIN_PORT).
    #[arg(long)]
    port: Option<u16>,
    /// HTTP API bind address (web.host).
    #[arg(long)]
    http_host: Option<String>,
    /// HTTP API port (web.port).
    #[arg(long)]
    http_port: Option<u16>,
    /// Metrics port (metrics.port).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Seed peers, comma-separated multiaddrs or host:port (network.known_peers; env PROVCHAIN_PEERS).
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Block interval: seconds (1, 0.5) or a duration ("500ms") (consensus.block_interval).
    #[arg(long)]
    block_interval: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    dump_config: bool,
    /// Probe the local node's /health endpoint and exit 0 if it answers 200 (for container
    /// HEALTHCHECKs: the runtime image has no curl).
    #[arg(long)]
    health_check: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        dev: args.dev,
        data_dir: args.data_dir,
        p2p_port: args.port,
        http_host: args.http_host,
        http_port: args.http_port,
        metrics_port: args.metrics_port,
        peers: args.peers,
        block_interval: args.block_interval,
    };
    if args.health_check {
        let port = overrides.http_port.or_else(|| {
            config::load(args.config.as_deref(), &overrides)
                .ok()
                .map(|c| c.web.port)
        });
        return health_check(port.unwrap_or(8080));
    }
    let config = match config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("provchaind: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.dump_config {
        print!("{}", config.dump());
        return std::process::ExitCode::SUCCESS;
    }
    provchain_node::init_logging(&config.logging);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("provchaind")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("provchaind: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("provchaind: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    let node = provchain_node::start(config).await?;
    let token = node.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
    node.wait().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A minimal HTTP/1.0 GET of `/health` on loopback.
fn health_check(port: u16) -> std::process::ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    let probe = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf)?;
        let head = String::from_utf8_lossy(&buf[..n]);
        Ok(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"))
    };
    match probe() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("provchaind: node on port {port} is not healthy");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("provchaind: cannot reach the node on 127.0.0.1:{port}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
