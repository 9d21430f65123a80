//! `provchaind`: the ProvChain node, assembled from the library crates.
//!
//! [`start`] builds a node from a validated [`Config`]: it loads (or, in dev mode, creates) the
//! node key and genesis, opens the store, starts the p2p swarm task (on its own network thread), the chain task (the single
//! writer of chain state, see [`chain`]), the sync task, and the HTTP and metrics servers. Tasks
//! are supervised: if one stops or panics, the node shuts down cleanly instead of running on
//! half-alive. [`RunningNode::shutdown`] stops listeners, lets the chain task flush storage, and
//! returns within seconds.
//!
//! ```text
//!  HTTP API ──commands──▶ chain task ◀──events── p2p swarm task ◀──▶ peers
//!      │                      │  ▲                    ▲
//!      └──reads──▶ store ◀────┘  └──batches── sync task┘
//! ```

pub mod api;
pub mod archive;
pub mod auth;
mod bodies;
pub mod chain;
pub mod config;
pub mod explorer;
pub mod governance;
mod ids;
pub mod keys;
pub mod metrics;
pub mod pool;
pub mod recent;
pub mod sync;
pub mod work;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use provchain_consensus::{Genesis, Limits};
use provchain_p2p::{P2pConfig, PeerId};
use provchain_storage::{QueryLimits, Store};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::chain::{Chain, ChainConfig, Clock};
pub use crate::config::Config;
use crate::config::{LogFormat, LoggingConfig};
use crate::metrics::Metrics;

/// Network id used by `--dev` chains, so a dev database is never mistaken for a real one.
pub const DEV_NETWORK_ID: &str = "provchain-dev";
/// The only network on which the deterministic development keys (`consensus.dev_key`) work.
pub const TESTNET_NETWORK_ID: &str = "provchain-testnet";

/// Installs the tracing subscriber: `RUST_LOG` if set, else `[logging] level`; text or JSON.
pub fn init_logging(cfg: &LoggingConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A started node.
pub struct RunningNode {
    pub http_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub peer_id: PeerId,
    pub store: Store,
    shutdown: CancellationToken,
    tasks: JoinSet<&'static str>,
}

impl RunningNode {
    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested or a task stops; then stops everything. Returns an
    /// error if a task failed.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {}
            Some(res) = self.tasks.join_next() => {
                let what = match res {
                    // Tasks end on their own once shutdown was requested; that is no failure.
                    Ok(_) if self.shutdown.is_cancelled() => String::new(),
                    Ok(name) => format!("task `{name}` stopped unexpectedly"),
                    Err(e) if e.is_panic() => format!("a task panicked: {e}"),
                    Err(e) => format!("a task failed: {e}"),
                };
                if !what.is_empty() {
                    error!("{what}; shutting down");
                    failure = Some(what);
                }
            }
        }
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            warn!("tasks did not stop within 10 s; aborting them");
            self.tasks.abort_all();
        }
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "flush at shutdown failed");
        }
        info!("node stopped");
        match failure {
            Some(f) => bail!(f),
            None => Ok(()),
        }
    }

    /// Requests shutdown and waits for it.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Builds the genesis and loads the node key as the configuration says.
pub fn identity(config: &Config) -> anyhow::Result<(provchain_consensus::Keypair, Genesis, bool)> {
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "cannot create data dir {} (storage.data_dir)",
            config.storage.data_dir.display()
        )
    })?;
    let key_file = config.key_file();
    let interval = config.consensus.block_interval.as_millis();
    if config.dev {
        let (key, created) = keys::load_or_create(&key_file)?;
        if created {
            info!(path = %key_file.display(), "created development node key");
        }
        let genesis = Genesis {
            network_id: DEV_NETWORK_ID.into(),
            authorities: vec![key.public()],
            block_interval_ms: interval,
            governance: governance_params(config),
        };
        return Ok((key, genesis, true));
    }
    if config.network.network_id == DEV_NETWORK_ID {
        bail!(
            "network.network_id `{DEV_NETWORK_ID}` is reserved for --dev chains; choose another id"
        );
    }
    let authorities = config.authority_keys();
    let key = if let Some(n) = config.consensus.dev_key {
        if config.network.network_id != TESTNET_NETWORK_ID {
            bail!(
                "consensus.dev_key uses a publicly known development key; it is accepted only with \
                 network.network_id = \"{TESTNET_NETWORK_ID}\". Use a key file (consensus.key_file) for \
                 network `{}`",
                config.network.network_id
            );
        }
        warn!(
            index = n,
            "using a deterministic development key: testnet only, never for real data"
        );
        keys::dev_key(n)
    } else if key_file.exists() {
        keys::load(&key_file)?
    } else if config.consensus.is_authority {
        bail!(
            "consensus.key_file {} does not exist; an authority needs its key: create one with \
             `provchain keygen --out {}` and list its public key in consensus.authority_keys",
            key_file.display(),
            key_file.display()
        );
    } else {
        let (key, _) = keys::load_or_create(&key_file)?;
        info!(path = %key_file.display(), "created observer node key");
        key
    };
    let in_genesis = authorities.contains(&key.public());
    if config.consensus.join_by_vote {
        if in_genesis {
            bail!(
                "consensus.join_by_vote is true but this node's public key {} is already in \
                 consensus.authority_keys; remove join_by_vote",
                key.public()
            );
        }
        info!(
            key = %key.public(),
            "authority not in the genesis set: it seals once the authorities vote it in \
             (see docs/DEPLOYMENT.md, onboarding a member)"
        );
    } else if config.consensus.is_authority && !in_genesis {
        bail!(
            "consensus.is_authority is true but this node's public key {} (from {}) is not in \
             consensus.authority_keys; add it there on every node, set is_authority = false, or \
             set consensus.join_by_vote = true if the authorities are to vote this key in",
            key.public(),
            key_file.display()
        );
    }
    let genesis = Genesis {
        network_id: config.network.network_id.clone(),
        authorities,
        block_interval_ms: interval,
        governance: governance_params(config),
    };
    Ok((key, genesis, config.consensus.is_authority))
}

fn governance_params(config: &Config) -> provchain_consensus::GovernanceParams {
    provchain_consensus::GovernanceParams {
        epoch_length: config.consensus.epoch_length,
        proposal_ttl: config.consensus.proposal_ttl,
    }
}

async fn bind(host: &str, port: u16, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port)).await.with_context(|| {
        format!("cannot listen on {host}:{port}; is the port in use? set {key} (or its environment variable)")
    })
}

/// Starts a node. Returns once every listener is bound.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    let (keypair, genesis, is_authority) = identity(&config)?;
    let genesis_hash = genesis.hash();
    let db_dir = config.storage.data_dir.join("db");
    let store = {
        let (dir, g) = (db_dir.clone(), genesis.clone());
        let cache = config.storage.cache_size_mb.max(1) * 1024 * 1024;
        // Opened on a thread at the storage writer's priority: sled's background threads
        // (its log flusher, its I/O pool) are started from here and inherit it.
        let (opened, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("store-open".into())
            .spawn(move || {
                work::lower_priority(writer::WRITER_NICENESS);
                let _ = opened.send(Store::open_with_cache(&dir, &g, cache));
            })
            .context("cannot start a thread to open the database")?;
        result
            .await
            .context("opening the database panicked")?
            .with_context(|| format!("cannot open the database in {}", db_dir.display()))?
    };
    // Admission checks (signing and parsing submissions, checking gossiped batches).
    let checks = work::CheckPool::per_core().context("cannot start the check threads")?;
    let metrics = Arc::new(Metrics::new());
    let limits = Limits {
        max_block_bytes: config.consensus.max_block_size,
        max_block_txs: config.consensus.max_block_txs,
        max_tx_bytes: config.consensus.max_tx_size,
    };

    let mut allowed_peers = Vec::new();
    for p in &config.network.allowed_peers {
        let id: PeerId = p.parse().map_err(|e| {
            anyhow::anyhow!("network.allowed_peers: `{p}` is not a PeerId ({e}); use `provchain key inspect` to get one")
        })?;
        allowed_peers.push(id);
    }
    let psk = match &config.network.psk_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read network.psk_file {}", path.display()))?;
            Some(
                provchain_p2p::parse_swarm_key(&text)
                    .with_context(|| format!("network.psk_file {}", path.display()))?,
            )
        }
        None => None,
    };
    let listen = format!(
        "/ip4/{}/tcp/{}",
        config.network.bind_address, config.network.listen_port
    )
    .parse()
    .with_context(|| {
        format!(
            "network.bind_address `{}` is not an IPv4 address",
            config.network.bind_address
        )
    })?;
    let p2p_config = P2pConfig {
        listen: vec![listen],
        bootstrap: config.network.known_peers.clone(),
        authorities: genesis.authorities.clone(),
        allowed_peers,
        psk,
        max_message_bytes: config.consensus.max_block_size + 64 * 1024,
        ..P2pConfig::new(keypair.clone(), genesis_hash)
    };
    let (p2p, p2p_events) = provchain_p2p::spawn(p2p_config).await?;
    let peer_id = p2p.local_peer_id();

    let clock = Clock {
        offset_ms: config.consensus.clock_offset_ms,
    };
    let chain_cfg = ChainConfig {
        genesis: genesis.clone(),
        keypair: keypair.clone(),
        is_authority,
        limits,
        empty_blocks: config.consensus.empty_blocks,
        max_pool_size: config.consensus.max_pool_size,
        max_drift_ms: config.consensus.max_clock_drift_ms,
        max_clock_adjust_ms: config.consensus.max_clock_adjust_ms,
        clock,
    };
    let (sync_tx, sync_rx) = tokio::sync::mpsc::channel(sync::WAKEUP_QUEUE);
    let (chain, chain_handle, commands) = Chain::open(
        chain_cfg,
        store.clone(),
        metrics.clone(),
        p2p.clone(),
        sync_tx,
        checks.clone(),
    )?;

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    {
        let s = shutdown.clone();
        tasks.spawn(async move {
            chain.run(commands, p2p_events, s).await;
            "chain"
        });
    }
    {
        let (s, c, p, m) = (
            shutdown.clone(),
            chain_handle.clone(),
            p2p.clone(),
            metrics.clone(),
        );
        tasks.spawn(async move {
            sync::run(c, p, m, sync_rx, s).await;
            "sync"
        });
    }
    {
        let (s, p) = (shutdown.clone(), p2p.clone());
        tasks.spawn(async move {
            s.cancelled().await;
            p.shutdown().await;
            "p2p"
        });
    }

    let state = api::AppState {
        node_id: config.node_id.clone(),
        chain: chain_handle,
        checks,
        store: store.clone(),
        p2p,
        metrics: metrics.clone(),
        keypair: keypair.clone(),
        genesis: genesis.clone(),
        genesis_hash,
        is_authority,
        jwt_secret: config.web.jwt_secret.clone(),
        max_tx_bytes: config.consensus.max_tx_size,
        query_limits: QueryLimits {
            timeout: Duration::from_millis(config.web.query_timeout_ms),
            max_rows: config.web.query_max_rows,
        },
        clock,
    };
    let mut app = api::router(state, config.web.max_body_size);
    if !config.web.cors.is_empty() {
        app = app.layer(cors_layer(&config.web.cors));
    }
    let listener = bind(&config.web.host, config.web.port, "web.port").await?;
    let http_addr = listener.local_addr()?;
    {
        let s = shutdown.clone();
        tasks.spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await });
            if let Err(e) = serve.await {
                error!(error = %e, "HTTP server failed");
            }
            "http"
        });
    }
    let mut metrics_addr = None;
    if config.metrics.enabled {
        let listener = bind(&config.metrics.host, config.metrics.port, "metrics.port").await?;
        metrics_addr = Some(listener.local_addr()?);
        let app = api::metrics_router(metrics.clone());
        let s = shutdown.clone();
        tasks.spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await });
            if let Err(e) = serve.await {
                error!(error = %e, "metrics server failed");
            }
            "metrics"
        });
    }
    info!(
        node_id = %config.node_id, %peer_id, genesis = %genesis_hash, http = %http_addr,
        authority = is_authority, authorities = genesis.authorities.len(),
        height = store.final_head()?.height, "node started"
    );
    Ok(RunningNode {
        http_addr,
        metrics_addr,
        peer_id,
        store,
        shutdown,
        tasks,
    })
}

fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{Any, CorsLayer};
    if origins.iter().any(|o| o == "*") {
        return CorsLayer::new()
            .allow_origin(Any)
            .allow_methods(Any)
            .allow_headers(Any);
    }
    let list: Vec<_> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(list)
        .allow_methods(Any)
        .allow_headers(Any)
}
