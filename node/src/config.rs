//! Node configuration: one typed struct per TOML section, layered with figment.
//!
//! Precedence, highest first: command-line flags > environment > TOML file > built-in defaults.
//! The file comes from `--config`, `CONFIG_FILE` or `PROVCHAIN_CONFIG`. Environment variables:
//! `PROVCHAIN_PEERS` (comma-separated peer addresses), `PROVCHAIN_PORT` (P2P listen port),
//! `PROVCHAIN_DATA_DIR`, `PROVCHAIN_NODE_ID`, `JWT_SECRET`, and `PROVCHAIN_<SECTION>__<KEY>` for any
//! key (e.g. `PROVCHAIN_WEB__PORT=8081`). Unknown keys and inconsistent values stop the daemon
//! with a message naming the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use provchain_consensus::PublicKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node_id: String,
    /// Development mode: one local authority whose key and genesis are created on first start.
    pub dev: bool,
    pub network: NetworkConfig,
    pub consensus: ConsensusConfig,
    pub storage: StorageConfig,
    pub web: WebConfig,
    pub metrics: MetricsConfig,
    pub logging: LoggingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: "provchain-node".into(),
            dev: false,
            network: NetworkConfig::default(),
            consensus: ConsensusConfig::default(),
            storage: StorageConfig::default(),
            web: WebConfig::default(),
            metrics: MetricsConfig::default(),
            logging: LoggingConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Part of genesis: nodes with a different network id never exchange data.
    pub network_id: String,
    pub listen_port: u16,
    pub bind_address: String,
    /// Seed peers: multiaddrs or `host:port`. `PROVCHAIN_PEERS` replaces this list.
    pub known_peers: Vec<String>,
    pub max_peers: u32,
    /// PeerIds (base58) of non-authority nodes allowed to connect (observers).
    pub allowed_peers: Vec<String>,
    /// Pre-shared key file (go-ipfs `swarm.key` format) for a private network.
    pub psk_file: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            network_id: "provchain".into(),
            listen_port: 30333,
            bind_address: "0.0.0.0".into(),
            known_peers: Vec::new(),
            max_peers: 50,
            allowed_peers: Vec::new(),
            psk_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    pub is_authority: bool,
    /// Ordered authority public keys (hex); slot `s` belongs to `authority_keys[s % n]`.
    pub authority_keys: Vec<String>,
    /// Seconds (`5`, `0.5`) or a duration string (`"500ms"`, `"2s"`).
    pub block_interval: Interval,
    /// Encoded block size limit in bytes.
    pub max_block_size: usize,
    /// Transactions per block.
    pub max_block_txs: usize,
    /// RDF bytes per transaction (also the HTTP body limit for submissions).
    pub max_tx_size: usize,
    /// Node key (hex ed25519 secret seed). Default: `<data_dir>/node.key`, created if missing.
    pub key_file: Option<PathBuf>,
    /// Seal blocks with no transactions so finality keeps moving.
    pub empty_blocks: bool,
    /// Transactions not yet final (waiting for a block, or in a non-final block): nothing is
    /// admitted beyond this, which bounds the memory they take. Client submissions get 503
    /// earlier, once 3/10 of it waits for a block (about one block's worth at the default):
    /// the rest is kept for transactions gossiped by peers, so under overload every authority
    /// holds every pending transaction and an accepted one waits about one slot for a block.
    pub max_pool_size: usize,
    /// How far ahead of our clock a block's slot may start and still be accepted.
    pub max_clock_drift_ms: u64,
    /// Use the deterministic development key number N (1-based) instead of a key file. These keys
    /// are public knowledge: the daemon accepts them only on the `provchain-testnet` network.
    pub dev_key: Option<u32>,
    /// Added to the system clock. For clock-skew testing only; keep 0 in production.
    pub clock_offset_ms: i64,
    /// Largest correction network-adjusted time applies to this node's slot clock (it follows
    /// the median of the authorities' clocks, seen in their blocks' timestamps). 0 turns it off.
    pub max_clock_adjust_ms: u64,
    /// Authority-set changes decided by vote take effect at the next multiple of this height.
    /// Part of the network's identity: the same on every node.
    pub epoch_length: u64,
    /// Blocks a governance proposal stays open for votes. The same on every node.
    pub proposal_ttl: u64,
    /// This authority's key is not in `authority_keys` (genesis): it joins the set when the
    /// authorities vote it in, and seals only from then on.
    pub join_by_vote: bool,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        let limits = provchain_consensus::Limits::default();
        Self {
            is_authority: false,
            authority_keys: Vec::new(),
            block_interval: Interval(Duration::from_secs(1)),
            max_block_size: limits.max_block_bytes,
            max_block_txs: limits.max_block_txs,
            max_tx_size: limits.max_tx_bytes,
            key_file: None,
            empty_blocks: true,
            max_pool_size: 10_000,
            max_clock_drift_ms: 500,
            dev_key: None,
            clock_offset_ms: 0,
            max_clock_adjust_ms: 10_000,
            epoch_length: provchain_consensus::GovernanceParams::default().epoch_length,
            proposal_ttl: provchain_consensus::GovernanceParams::default().proposal_ttl,
            join_by_vote: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub cache_size_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            cache_size_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    pub host: String,
    pub port: u16,
    /// Allowed CORS origins (`"*"` for any). Empty: no CORS headers.
    pub cors: Vec<String>,
    /// HS256 secret; when set, write endpoints need `Authorization: Bearer <JWT>`.
    pub jwt_secret: Option<String>,
    /// Largest request body accepted (bytes).
    pub max_body_size: usize,
    /// SPARQL query time limit (ms) and row limit.
    pub query_timeout_ms: u64,
    pub query_max_rows: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            cors: Vec::new(),
            jwt_secret: None,
            max_body_size: 2 * 1024 * 1024,
            query_timeout_ms: 10_000,
            query_max_rows: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 9090,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Default filter when `RUST_LOG` is unset.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A block interval, written as seconds (`5`, `0.5`) or a duration string (`"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl Interval {
    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Str(String),
        }
        // `try_from`: `Duration::from_secs_f64` panics on values beyond `Duration::MAX`.
        let secs = |v: f64| {
            Duration::try_from_secs_f64(v).map(Interval).map_err(|_| {
                serde::de::Error::custom("block_interval must be a non-negative number of seconds")
            })
        };
        match Raw::deserialize(d)? {
            Raw::Int(v) => Ok(Interval(Duration::from_secs(v))),
            Raw::Float(v) => secs(v),
            Raw::Str(s) => match s.trim().parse::<f64>() {
                Ok(v) => secs(v),
                Err(_) => humantime::parse_duration(s.trim()).map(Interval).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a duration ({e}); write seconds like 1 or 0.5, or \"500ms\""
                    ))
                }),
            },
        }
    }
}

/// Values given on the command line; `None` leaves lower layers in charge.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub dev: bool,
    pub data_dir: Option<PathBuf>,
    pub p2p_port: Option<u16>,
    pub http_host: Option<String>,
    pub http_port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub peers: Option<Vec<String>>,
    pub block_interval: Option<String>,
}

/// Environment variables that map to specific keys (besides `PROVCHAIN_<SECTION>__<KEY>`).
const ENV_ALIASES: &[(&str, &str)] = &[
    ("PROVCHAIN_PORT", "network.listen_port"),
    ("PROVCHAIN_DATA_DIR", "storage.data_dir"),
    ("PROVCHAIN_NODE_ID", "node_id"),
    ("JWT_SECRET", "web.jwt_secret"),
];

/// Longest block interval accepted. Finality needs blocks from a majority of the authorities,
/// so longer slots would leave transactions pending for hours.
const MAX_BLOCK_INTERVAL: Duration = Duration::from_secs(3600);

/// Builds the effective configuration from all layers and validates it.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CONFIG_FILE").map(PathBuf::from))
        .or_else(|| std::env::var_os("PROVCHAIN_CONFIG").map(PathBuf::from));
    if let Some(path) = &file {
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    // PROVCHAIN_<SECTION>__<KEY>: only names with a section separator, so unrelated PROVCHAIN_*
    // variables (the CLI's PROVCHAIN_TOKEN, say) never trip the unknown-key check.
    fig = fig.merge(
        Env::prefixed("PROVCHAIN_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    for (var, key) in ENV_ALIASES {
        if let Ok(v) = std::env::var(var) {
            fig = fig.merge(Serialized::default(key, env_value(&v)));
        }
    }
    if let Ok(peers) = std::env::var("PROVCHAIN_PEERS") {
        fig = fig.merge(Serialized::default(
            "network.known_peers",
            split_list(&peers),
        ));
    }
    if overrides.dev {
        fig = fig.merge(Serialized::default("dev", true));
    }
    if let Some(v) = &overrides.data_dir {
        fig = fig.merge(Serialized::default("storage.data_dir", v));
    }
    if let Some(v) = overrides.p2p_port {
        fig = fig.merge(Serialized::default("network.listen_port", v));
    }
    if let Some(v) = &overrides.http_host {
        fig = fig.merge(Serialized::default("web.host", v));
    }
    if let Some(v) = overrides.http_port {
        fig = fig.merge(Serialized::default("web.port", v));
    }
    if let Some(v) = overrides.metrics_port {
        fig = fig.merge(Serialized::default("metrics.port", v));
    }
    if let Some(v) = &overrides.peers {
        fig = fig.merge(Serialized::default("network.known_peers", v));
    }
    if let Some(v) = &overrides.block_interval {
        fig = fig.merge(Serialized::default("consensus.block_interval", v));
    }
    finish(fig)
}

/// Loads a configuration from TOML text over the defaults, with the same extraction and
/// validation as [`load`] but no environment or flags: for tools, tests and fuzzing.
pub fn load_from_str(toml: &str) -> Result<Config, ConfigError> {
    finish(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)))
}

/// Extracts the layered configuration, applies the dev data-dir default and validates.
fn finish(fig: Figment) -> Result<Config, ConfigError> {
    let mut config: Config = fig
        .extract()
        .map_err(|e| ConfigError::Load(figment_message(e)))?;
    if config.dev && config.storage.data_dir == StorageConfig::default().data_dir {
        // Dev chains live apart from real ones unless told otherwise.
        config.storage.data_dir = PathBuf::from("./data/dev");
    }
    config.validate()?;
    Ok(config)
}

/// Environment values are strings; numbers stay numbers so typed keys accept them.
fn env_value(v: &str) -> figment::value::Value {
    if let Ok(n) = v.parse::<u64>() {
        return n.into();
    }
    v.to_string().into()
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn figment_message(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Config {
    /// Checks related fields together; every message names the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.consensus.block_interval.as_millis() == 0 {
            return Err(invalid(
                "consensus.block_interval",
                "must be greater than zero (e.g. 1 for one second, or \"500ms\")",
            ));
        }
        if self.consensus.block_interval.0 > MAX_BLOCK_INTERVAL {
            return Err(invalid(
                "consensus.block_interval",
                "must be at most one hour (3600); finality needs several blocks",
            ));
        }
        if self.consensus.max_block_size < 64 * 1024 {
            return Err(invalid(
                "consensus.max_block_size",
                "must be at least 65536 bytes",
            ));
        }
        if self.consensus.max_tx_size > self.consensus.max_block_size {
            return Err(invalid(
                "consensus.max_tx_size",
                "must not exceed consensus.max_block_size, or no block could carry it",
            ));
        }
        if self.consensus.max_pool_size == 0 {
            return Err(invalid(
                "consensus.max_pool_size",
                "must be greater than zero",
            ));
        }
        for k in &self.consensus.authority_keys {
            PublicKey::from_hex(k).map_err(|e| {
                invalid(
                    "consensus.authority_keys",
                    format!("`{k}` is not a hex ed25519 public key: {e}"),
                )
            })?;
        }
        if !self.dev && self.consensus.authority_keys.is_empty() {
            return Err(invalid(
                "consensus.authority_keys",
                "is empty: list the network's authority public keys (same order on every node), \
                 or start with --dev for a single-node development chain",
            ));
        }
        if self.consensus.epoch_length == 0
            || self.consensus.epoch_length > provchain_consensus::governance::MAX_GOVERNANCE_PARAM
        {
            return Err(invalid(
                "consensus.epoch_length",
                "must be between 1 and 4294967296 (default 10 blocks)",
            ));
        }
        if self.consensus.proposal_ttl == 0
            || self.consensus.proposal_ttl > provchain_consensus::governance::MAX_GOVERNANCE_PARAM
        {
            return Err(invalid(
                "consensus.proposal_ttl",
                "must be between 1 and 4294967296 (default 1000 blocks)",
            ));
        }
        if self.consensus.join_by_vote && !self.consensus.is_authority {
            return Err(invalid(
                "consensus.join_by_vote",
                "needs consensus.is_authority = true: only an authority seals once voted in",
            ));
        }
        if let Some(s) = &self.web.jwt_secret
            && s.len() < 16
        {
            return Err(invalid("web.jwt_secret", "must be at least 16 characters"));
        }
        if self.network.network_id.trim().is_empty() {
            return Err(invalid("network.network_id", "must not be empty"));
        }
        Ok(())
    }

    pub fn key_file(&self) -> PathBuf {
        self.consensus
            .key_file
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("node.key"))
    }

    pub fn authority_keys(&self) -> Vec<PublicKey> {
        self.consensus
            .authority_keys
            .iter()
            .filter_map(|k| PublicKey::from_hex(k).ok())
            .collect()
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn dump(&self) -> String {
        let mut c = self.clone();
        if c.web.jwt_secret.is_some() {
            c.web.jwt_secret = Some("<redacted>".into());
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}
