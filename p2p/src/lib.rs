//! ProvChain's peer-to-peer layer: one libp2p swarm, driven by one task, behind a handle.
//!
//! # What it owns
//!
//! The libp2p [`Swarm`](libp2p::Swarm) and everything in it: the TCP + Noise + Yamux transport
//! (DNS-resolving, optionally wrapped in a `pnet` pre-shared-key private network), the allow
//! list that enforces permissioning, gossipsub (one topic for blocks, one for transactions),
//! Kademlia + identify for discovery, ping for liveness, and a request-response protocol for
//! block sync. Nothing outside this crate sees a raw swarm event or a libp2p behaviour.
//!
//! Permissioning: only the authorities and the configured [`P2pConfig::allowed_peers`] may
//! connect, relay or author gossip. The authority set starts as [`P2pConfig::authorities`] and
//! follows governance through [`P2pHandle::set_authorities`]: newly allowed peers are admitted
//! (and dialed when their address is known), peers no longer allowed are disconnected and
//! refused, and a ban for misbehaviour stays in force whatever the set says.
//!
//! # Tasks and channels
//!
//! [`spawn`] starts the **network thread**, a single-threaded tokio runtime of its own whose
//! reactor owns every socket; there it builds the swarm, binds the listeners (so a busy port is
//! reported at once) and runs **one task**, the swarm task, which owns the swarm and all
//! per-peer state (libp2p's connection tasks run on the same thread). Off the node's shared
//! runtime, a block's bytes are read the moment they arrive however busy the node's workers
//! are. The rest of the node talks to it through:
//!
//! * a cloneable [`P2pHandle`]: every method sends a command on a bounded channel
//!   ([`COMMAND_CHANNEL_CAPACITY`]) and, where there is an answer, awaits it on a oneshot;
//! * a bounded receiver of [`P2pEvent`]s ([`EVENT_CHANNEL_CAPACITY`]). The swarm task never
//!   blocks on this channel (a node that awaits a handle call while the swarm waits for it to
//!   read an event would deadlock): control events that do not fit are queued in a bounded
//!   outbox ([`MAX_EVENT_OUTBOX`]); gossip that does not fit is dropped with an `Ignore`
//!   verdict and sync requests are answered "busy". Both are counted in [`NetworkStats`].
//!
//! # Data flow
//!
//! * **Gossip in**: gossipsub (strict signing, `validate_messages`) hands a message to the swarm
//!   task, which checks that both the forwarding peer and the author are allowed, decodes it
//!   with the consensus codec and emits [`P2pEvent::BlockReceived`] / [`P2pEvent::TxsReceived`].
//!   Nothing is forwarded until the node validates it and calls [`P2pHandle::report`]; a
//!   `Reject` penalises the sender through gossipsub peer scoring (P₄). Undecodable messages are
//!   rejected here and surface as [`P2pEvent::InvalidMessage`].
//! * **Gossip out**: [`P2pHandle::publish_block`] / [`P2pHandle::publish_txs`] (transactions
//!   travel in batches: one signed gossip message carries many).
//! * **Sync in**: a peer's `Status` / `GetBlocks` request becomes [`P2pEvent::StatusRequest`] /
//!   [`P2pEvent::BlocksRequest`] carrying a oneshot; the node answers from its chain, the swarm
//!   task truncates the answer to the bounds below and sends it back.
//! * **Sync out**: [`P2pHandle::request_status`] / [`P2pHandle::request_blocks`].
//! * **Discovery**: bootstrap addresses (`PROVCHAIN_PEERS`) are dialed at start and redialed with
//!   exponential backoff while disconnected; identify feeds every peer's listen addresses into
//!   Kademlia; each newly identified peer and every [`P2pConfig::bootstrap_interval`] triggers a
//!   Kademlia lookup, and allowed peers it finds are dialed, so peers seeded with one common
//!   address end up fully connected.
//!
//! # Network separation
//!
//! Protocol names and gossip topics carry the first 16 hex digits of the genesis hash
//! (`/provchain/<hex16>/kad/1`, `/provchain/<hex16>/sync/1`, `provchain/<hex16>/blocks`, …);
//! identify's protocol version and every sync request carry it too, and mismatches are refused.

use std::fmt;
use std::time::Duration;

use libp2p::identity;
use libp2p::multiaddr::Protocol;
use provchain_consensus::{Block, CompactBlock, Hash, Keypair, PublicKey, Transaction};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

mod handle;
mod service;
mod wire;

#[cfg(test)]
mod tests;

pub use handle::{P2pHandle, Queued};
pub use libp2p::{Multiaddr, PeerId};

/// Commands queued from handles to the swarm task. Callers await when it is full, which is
/// the back-pressure we want; 256 absorbs a burst of publishes without stalling the node.
pub const COMMAND_CHANNEL_CAPACITY: usize = 256;
/// Events queued from the swarm task to the node. Big enough for a block burst plus sync
/// traffic between two reads of a busy node loop.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// Control events (connects, disconnects, refusals, invalid messages) kept while the event
/// channel is full, so they are delayed rather than lost. Beyond this they are dropped (and
/// counted); a node that far behind has bigger problems.
pub const MAX_EVENT_OUTBOX: usize = 4096;
/// Hard cap on blocks in one sync response, whatever the requester asks for: bounds the work
/// and memory of one answer (the spec's "≤128 blocks" batch).
pub const MAX_SYNC_BLOCKS: u32 = 128;
/// Largest encoded sync request. Requests are a genesis hash and two integers; anything
/// bigger is hostile.
pub const MAX_REQUEST_BYTES: usize = 1024;
/// Extra room on top of [`P2pConfig::max_message_bytes`] for the response envelope (version,
/// tag, counts and per-block length prefixes).
pub const RESPONSE_SLACK_BYTES: usize = 64 * 1024;
/// Inbound sync requests waiting for the node's answer at once. More are answered "busy", so
/// a flood of requests cannot pile up oneshots and memory.
pub const MAX_PENDING_INBOUND_REQUESTS: usize = 64;
/// How long the node may take to answer a sync request before the swarm task gives up and
/// answers "busy"; below [`DEFAULT_REQUEST_TIMEOUT`] so the requester gets a clear answer.
pub const NODE_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for TCP connect + (pnet) + Noise + Yamux. A peer without the right pre-shared key does
/// not fail the pnet handshake, it hangs: this makes it fail within seconds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// First redial delay for a lost bootstrap peer; doubled per failure up to [`MAX_REDIAL_BACKOFF`].
pub const INITIAL_REDIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Ceiling of the redial backoff: a restarted peer is found again within half a minute.
pub const MAX_REDIAL_BACKOFF: Duration = Duration::from_secs(30);
/// Consecutive ping failures after which a connection is considered dead and closed (idle
/// connections are otherwise kept for [`P2pConfig::idle_timeout`]).
pub const MAX_PING_FAILURES: u32 = 3;
/// How often connected peers are pinged. Short enough that a partitioned peer is dropped from
/// the peer list (and redialed) within ~20 s instead of a minute.
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// How long one ping may take before it counts as failed.
pub const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Gossip message format version (first byte of every gossip payload).
pub const GOSSIP_VERSION: u8 = 1;
/// Most transactions in one gossip message ([`P2pHandle::publish_txs`]); a received batch
/// claiming more is rejected undecoded.
pub const MAX_GOSSIP_BATCH: usize = 4096;

/// Default [`P2pConfig::max_message_bytes`]: the spec's 8 MiB sync batch / block bound plus
/// envelope headroom.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024 + 64 * 1024;
/// Default [`P2pConfig::idle_timeout`]: a permissioned network wants its few peers connected
/// permanently; dead connections are detected by ping instead.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default [`P2pConfig::bootstrap_interval`].
pub const DEFAULT_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);
/// Default [`P2pConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`P2pConfig::max_strikes`]. Honest peers forward only what they validated, so
/// strikes come from faulty or hostile peers; the margin covers configuration differences
/// (e.g. a lower size limit here) without banning a well-meaning peer for one message.
pub const DEFAULT_MAX_STRIKES: u32 = 20;
/// Default [`P2pConfig::ban_duration`].
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(300);
/// A peer's strikes are forgotten after this long without a new one.
pub const STRIKE_MEMORY: Duration = Duration::from_secs(600);
/// Default P2P port (spec §6).
pub const DEFAULT_PORT: u16 = 30333;

/// Everything the swarm needs. `Debug` redacts the pre-shared key.
#[derive(Clone)]
pub struct P2pConfig {
    /// The node key; also its libp2p ed25519 identity.
    pub keypair: Keypair,
    /// Prefixes protocol names and topics so different networks never exchange data.
    pub genesis_hash: Hash,
    /// Listen addresses, e.g. `/ip4/0.0.0.0/tcp/30333` (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// `PROVCHAIN_PEERS` entries; see [`parse_peer_addr`] for the accepted forms.
    pub bootstrap: Vec<String>,
    /// Authorities' keys at startup: their PeerIds may connect and are flagged `is_authority`.
    /// [`P2pHandle::set_authorities`] replaces the set at runtime.
    pub authorities: Vec<PublicKey>,
    /// Observers allowed to connect besides the authorities, whatever the authority set.
    pub allowed_peers: Vec<PeerId>,
    /// Pre-shared key of a `pnet` private network (see [`parse_swarm_key`]).
    pub psk: Option<[u8; 32]>,
    /// Largest gossip message and sync response payload; must be at least the block size limit
    /// plus some overhead.
    pub max_message_bytes: usize,
    /// Connections on which no protocol is active are closed after this long.
    pub idle_timeout: Duration,
    /// Period of the Kademlia bootstrap (and of dialing discovered but unconnected peers).
    pub bootstrap_interval: Duration,
    /// Timeout of one outbound sync request.
    pub request_timeout: Duration,
    /// Gossipsub heartbeat; mesh maintenance and gossip run at this pace.
    pub heartbeat_interval: Duration,
    /// Misbehaviour strikes (rejected or undecodable messages, lying sync answers) after which
    /// a peer is disconnected and banned for [`P2pConfig::ban_duration`]. Strikes are forgotten
    /// after [`STRIKE_MEMORY`] without a new one.
    pub max_strikes: u32,
    /// How long a banned peer is refused (inbound and outbound) before it may connect again.
    pub ban_duration: Duration,
}

impl P2pConfig {
    /// The defaults for a node with this key on this network.
    pub fn new(keypair: Keypair, genesis_hash: Hash) -> Self {
        Self {
            keypair,
            genesis_hash,
            ..Self::default()
        }
    }
}

/// Defaults with an all-zero key and genesis hash: only useful as `..Default::default()`
/// filler; prefer [`P2pConfig::new`].
impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            keypair: Keypair::from_secret([0; 32]),
            genesis_hash: Hash::default(),
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Tcp(DEFAULT_PORT)),
            ],
            bootstrap: Vec::new(),
            authorities: Vec::new(),
            allowed_peers: Vec::new(),
            psk: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            bootstrap_interval: DEFAULT_BOOTSTRAP_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            heartbeat_interval: Duration::from_millis(700),
            max_strikes: DEFAULT_MAX_STRIKES,
            ban_duration: DEFAULT_BAN_DURATION,
        }
    }
}

impl fmt::Debug for P2pConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P2pConfig")
            .field("keypair", &self.keypair)
            .field("genesis_hash", &self.genesis_hash)
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("authorities", &self.authorities)
            .field("allowed_peers", &self.allowed_peers)
            .field("psk", &self.psk.map(|_| "<redacted>"))
            .field("max_message_bytes", &self.max_message_bytes)
            .field("idle_timeout", &self.idle_timeout)
            .field("bootstrap_interval", &self.bootstrap_interval)
            .field("request_timeout", &self.request_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

/// Errors of this crate, worded for an operator.
#[derive(Debug, Error)]
pub enum P2pError {
    #[error("port {port} is in use; set PROVCHAIN_PORT or [network] listen_port")]
    PortInUse { port: u16 },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error(
        "invalid peer address {input:?}: {reason} (expected a multiaddr such as /ip4/10.0.0.1/tcp/30333, \
         /dns4/node1/tcp/30333[/p2p/<peer id>], or host:port)"
    )]
    InvalidPeerAddr { input: String, reason: String },
    #[error(
        "invalid swarm key: {0} (expected \"/key/swarm/psk/1.0.0/\", \"/base16/\" and 64 hex digits on three lines)"
    )]
    InvalidSwarmKey(String),
    #[error("invalid p2p configuration: {0}")]
    Config(String),
    #[error("building the libp2p transport failed: {0}")]
    Transport(String),
    #[error("publishing failed: {0}")]
    Publish(String),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("peer {peer} sent an invalid response: {reason}")]
    InvalidResponse { peer: PeerId, reason: String },
    #[error("peer {peer} refused the request: {reason}")]
    Refused { peer: PeerId, reason: String },
    #[error("the p2p service has stopped")]
    Stopped,
}

/// A gossip message awaiting the node's verdict. Opaque: pass it back to [`P2pHandle::report`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId {
    pub(crate) id: libp2p::gossipsub::MessageId,
    pub(crate) source: PeerId,
}

impl MessageId {
    /// The content-addressed id (blake3 of topic and payload).
    pub fn as_bytes(&self) -> &[u8] {
        &self.id.0
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({} from {})", self.id, self.source)
    }
}

/// The node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it to the mesh.
    Accept,
    /// Invalid: drop it and penalise the sender.
    Reject,
    /// Not forwarded, not penalised (e.g. a duplicate or a block held for later).
    Ignore,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A connected (and identified) peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The peer's listen addresses as it reported them, else the address we reached it on.
    pub addresses: Vec<Multiaddr>,
    pub is_authority: bool,
    /// Direction of the first connection.
    pub direction: Direction,
    /// Unix time in milliseconds of the first connection.
    pub connected_since_ms: u64,
}

/// A node's view of its chain, exchanged before syncing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStatus {
    pub genesis_hash: Hash,
    pub best_height: u64,
    pub best_hash: Hash,
    pub final_height: u64,
    pub final_hash: Hash,
}

/// Counters for metrics and readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Identified, connected peers.
    pub peers: usize,
    /// Peers subscribed to the blocks topic.
    pub block_topic_peers: usize,
    /// Our gossipsub mesh size for the blocks topic.
    pub block_mesh_peers: usize,
    /// Connections refused because the peer is not allowed.
    pub refused_connections: u64,
    /// Outbound dials that failed (unreachable, wrong key, handshake timeout…).
    pub dial_failures: u64,
    /// Undecodable or unauthorised gossip and sync messages.
    pub invalid_messages: u64,
    /// Gossip messages dropped (verdict `Ignore`) because the event channel was full.
    pub dropped_gossip: u64,
    /// Sync requests answered "busy" (node too slow or too many pending).
    pub busy_requests: u64,
    /// Peers banned for misbehaviour since start.
    pub peers_banned: u64,
}

/// What the swarm task tells the node.
#[derive(Debug)]
pub enum P2pEvent {
    /// A peer connected and completed identification.
    PeerConnected { peer: PeerId, is_authority: bool },
    /// The last connection to a previously connected peer closed.
    PeerDisconnected { peer: PeerId },
    /// A gossiped block; validate it, then [`P2pHandle::report`] the verdict.
    BlockReceived {
        from: PeerId,
        message_id: MessageId,
        block: Box<Block>,
        /// When the message arrived, before any queueing towards the node: what the node's
        /// clock-offset estimate compares the block's timestamp with.
        received: std::time::Instant,
    },
    /// A gossiped block in compact form: transaction ids instead of transactions. Rebuild it
    /// from the transactions the node holds (or fetch it by sync), validate it, then
    /// [`P2pHandle::report`] the verdict.
    CompactBlockReceived {
        from: PeerId,
        message_id: MessageId,
        block: Box<CompactBlock>,
        received: std::time::Instant,
    },
    /// A gossiped batch of transactions (1..=[`MAX_GOSSIP_BATCH`]); validate them, then
    /// [`P2pHandle::report`] one verdict for the message.
    TxsReceived {
        from: PeerId,
        message_id: MessageId,
        txs: Vec<Transaction>,
    },
    /// Undecodable or unauthorised gossip / sync bytes, already rejected and penalised here.
    InvalidMessage {
        from: PeerId,
        kind: &'static str,
        reason: String,
    },
    /// A peer asks for our chain status.
    StatusRequest {
        peer: PeerId,
        reply: oneshot::Sender<ChainStatus>,
    },
    /// A peer asks for blocks of our best chain from `from_height`, at most `max`
    /// (already capped at [`MAX_SYNC_BLOCKS`]); the answer is further truncated to
    /// [`P2pConfig::max_message_bytes`].
    BlocksRequest {
        peer: PeerId,
        from_height: u64,
        max: u32,
        reply: oneshot::Sender<Vec<Block>>,
    },
    /// A connection from or to a peer that is not allowed was refused.
    PeerRefused { peer: PeerId },
    /// A peer reached [`P2pConfig::max_strikes`]: it is disconnected and refused until the ban
    /// ends. `reason` is its last offence.
    PeerBanned {
        peer: PeerId,
        reason: String,
        duration: Duration,
    },
}

/// The libp2p PeerId of an ed25519 key: authorities' PeerIds follow from genesis.
pub fn peer_id_of(key: &PublicKey) -> PeerId {
    if let Ok(pk) = identity::ed25519::PublicKey::try_from_bytes(&key.0) {
        return identity::PublicKey::from(pk).to_peer_id();
    }
    // Not a valid curve point, so no node can own this identity; derive the id the same way
    // (identity multihash of the protobuf-encoded key) so the mapping stays total.
    let mut bytes = Vec::with_capacity(38);
    bytes.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    bytes.extend_from_slice(&key.0);
    PeerId::from_bytes(&bytes).unwrap_or_else(|_| PeerId::random())
}

/// Parses one `PROVCHAIN_PEERS` entry: a multiaddr (`/ip4/../tcp/N`, `/dns4/node1/tcp/N`,
/// optionally ending in `/p2p/<id>`) or `host:port`, where host is an IPv4/IPv6 literal or a
/// DNS name.
pub fn parse_peer_addr(input: &str) -> Result<Multiaddr, P2pError> {
    let s = input.trim();
    let err = |reason: &str| P2pError::InvalidPeerAddr {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.starts_with('/') {
        let addr: Multiaddr = s.parse().map_err(|e| err(&format!("{e}")))?;
        let mut has_host = false;
        let mut has_tcp = false;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_) => has_host = true,
                Protocol::Tcp(_) => has_tcp = true,
                _ => {}
            }
        }
        if !has_host || !has_tcp {
            return Err(err(
                "a multiaddr needs a host (/ip4, /ip6, /dns4…) and a /tcp port",
            ));
        }
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| err("missing :port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| err("port is not a number 0-65535"))?;
    if port == 0 {
        return Err(err("port 0 cannot be dialed"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let first = if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        Protocol::Ip4(ip)
    } else if let Ok(ip) = host.parse::<std::net::Ipv6Addr>() {
        Protocol::Ip6(ip)
    } else if is_dns_name(host) {
        Protocol::Dns4(host.to_owned().into())
    } else {
        return Err(err("host is neither an IP address nor a DNS name"));
    };
    Ok(Multiaddr::empty().with(first).with(Protocol::Tcp(port)))
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // An all-numeric dotted host is a mistyped IP, not a name.
        && !host.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Parses a go-ipfs `swarm.key` file: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits.
pub fn parse_swarm_key(text: &str) -> Result<[u8; 32], P2pError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let bad = |m: &str| P2pError::InvalidSwarmKey(m.to_owned());
    if lines.next() != Some("/key/swarm/psk/1.0.0/") {
        return Err(bad("first line is not /key/swarm/psk/1.0.0/"));
    }
    if lines.next() != Some("/base16/") {
        return Err(bad(
            "second line is not /base16/ (only base16 keys are supported)",
        ));
    }
    let hex = lines.next().ok_or_else(|| bad("the key line is missing"))?;
    if lines.next().is_some() {
        return Err(bad("unexpected text after the key"));
    }
    if hex.len() != 64 {
        return Err(bad(&format!(
            "the key has {} characters, expected 64 hex digits",
            hex.len()
        )));
    }
    let mut key = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(chunk).map_err(|_| bad("the key is not hexadecimal"))?;
        key[i] = u8::from_str_radix(digits, 16).map_err(|_| bad("the key is not hexadecimal"))?;
    }
    Ok(key)
}

/// Starts the network thread (its own single-threaded runtime, which owns every socket),
/// builds the swarm and binds the listeners there, failing with [`P2pError::PortInUse`] when
/// the port is taken. Returns once the swarm listens; it does not wait on peers. The thread
/// stops when [`P2pHandle::shutdown`] is called or every handle is dropped.
pub async fn spawn(config: P2pConfig) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>), P2pError> {
    service::spawn(config).await
}

/// First 16 hex digits of the genesis hash: the network's prefix in protocol names and topics.
pub(crate) fn network_prefix(genesis_hash: &Hash) -> String {
    genesis_hash.to_hex()[..16].to_owned()
}
