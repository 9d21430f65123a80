//! The swarm task: builds the swarm and runs the one loop that owns it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, Transport, allow_block_list, identify, identity, kad,
    noise, ping, tcp, yamux,
};
use provchain_consensus::crypto::hash_with;
use provchain_consensus::{Block, Hash, PublicKey};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::handle::{Command, P2pHandle, Topic};
use crate::wire::{self, SyncCodec, SyncQuery, SyncRequest, SyncResponse};
use crate::{
    COMMAND_CHANNEL_CAPACITY, ChainStatus, Direction, EVENT_CHANNEL_CAPACITY, HANDSHAKE_TIMEOUT,
    INITIAL_REDIAL_BACKOFF, MAX_EVENT_OUTBOX, MAX_PENDING_INBOUND_REQUESTS, MAX_PING_FAILURES,
    MAX_REDIAL_BACKOFF, MAX_SYNC_BLOCKS, MessageId, Multiaddr, NODE_ANSWER_TIMEOUT, NetworkStats,
    P2pConfig, P2pError, P2pEvent, PING_INTERVAL, PING_TIMEOUT, PeerId, PeerInfo,
    RESPONSE_SLACK_BYTES, Verdict, network_prefix, parse_peer_addr,
};

/// Room on top of `max_message_bytes` for gossipsub's protobuf envelope (author key, signature,
/// sequence number, topic), so a maximal block still fits one RPC.
const GOSSIP_ENVELOPE_SLACK: usize = 4096;
/// Sync streams open at once per connection; sync is sequential per peer, so a few suffice and
/// a peer cannot open hundreds.
const MAX_CONCURRENT_SYNC_STREAMS: usize = 16;
/// How often due bootstrap redials are checked; the granularity of the backoff.
const REDIAL_TICK: Duration = Duration::from_millis(500);
/// A graylisted peer gets at most one strike this often for being graylisted.
const GRAYLIST_STRIKE_EVERY: Duration = Duration::from_secs(1);
/// A discovered (non-bootstrap) peer is dialed at most this often, so repeated Kademlia
/// results for an unreachable peer do not become a dial storm.
const DISCOVERED_REDIAL_MIN: Duration = Duration::from_secs(5);
/// Domain of gossip message ids (content addressing: identical payloads dedupe).
const GOSSIP_ID_DOMAIN: &str = "provchain 2026 gossip message id v1";
/// Gossipsub P₄ weight: one rejected message costs 20 points, two (counter squared) reach
/// the graylist threshold.
const INVALID_MESSAGE_WEIGHT: f64 = -20.0;
/// Per-second decay of the invalid-message counter: an honest peer that relayed one bad
/// message recovers within half a minute.
const INVALID_MESSAGE_DECAY: f64 = 0.9;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // First, so a refused peer never reaches the other behaviours.
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    gossipsub:
        gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::WhitelistSubscriptionFilter>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

/// Names derived from the genesis hash.
struct Names {
    protocol_version: String,
    kad: StreamProtocol,
    sync: StreamProtocol,
    blocks: IdentTopic,
    txs: IdentTopic,
}

impl Names {
    fn new(genesis_hash: &Hash) -> Result<Self, P2pError> {
        let p = network_prefix(genesis_hash);
        let proto = |s: String| {
            StreamProtocol::try_from_owned(s).map_err(|e| P2pError::Config(e.to_string()))
        };
        Ok(Self {
            protocol_version: format!("/provchain/{p}/1"),
            kad: proto(format!("/provchain/{p}/kad/1"))?,
            sync: proto(format!("/provchain/{p}/sync/1"))?,
            blocks: IdentTopic::new(format!("provchain/{p}/blocks")),
            txs: IdentTopic::new(format!("provchain/{p}/txs")),
        })
    }
}

fn build_behaviour(
    key: &identity::Keypair,
    cfg: &P2pConfig,
    names: &Names,
    allowed: &HashSet<PeerId>,
) -> Result<Behaviour, P2pError> {
    let peer_id = key.public().to_peer_id();
    let conf = |e: String| P2pError::Config(e);

    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for p in allowed {
        allow.allow_peer(*p);
    }

    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::new(
                &hash_with(GOSSIP_ID_DOMAIN, &[m.topic.as_str().as_bytes(), &m.data]).0,
            )
        })
        // Suited to 3..50 nodes: with ≤5 peers everyone is in everyone's mesh; in a large
        // network each node keeps 4 (2..8) mesh links. Constraints: outbound_min ≤ low ≤ n ≤
        // high and 2·outbound_min ≤ n.
        .mesh_outbound_min(1)
        .mesh_n_low(2)
        .mesh_n(4)
        .mesh_n_high(8)
        .heartbeat_interval(cfg.heartbeat_interval)
        // Blocks go straight to every subscribed peer, not just the mesh: lowest latency for
        // the slot leader's block, cheap at this network size.
        .flood_publish(true)
        .max_transmit_size(cfg.max_message_bytes + GOSSIP_ENVELOPE_SLACK)
        .build()
        .map_err(|e| conf(format!("gossipsub: {e}")))?;
    let filter = gossipsub::WhitelistSubscriptionFilter(
        [names.blocks.hash(), names.txs.hash()]
            .into_iter()
            .collect(),
    );
    let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_cfg,
        filter,
    )
    .map_err(|e| conf(format!("gossipsub: {e}")))?;
    // Scoring only for invalid messages (P₄), so a `Reject` verdict costs the sender; the
    // delivery-rate terms (P₂, P₃) would punish quiet peers on a low-traffic chain, and IP
    // colocation is meaningless when every peer is vetted (and testnets share one host).
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
        ..Default::default()
    };
    let mut score_params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    score_params
        .topics
        .insert(names.blocks.hash(), topic_params.clone());
    score_params.topics.insert(names.txs.hash(), topic_params);
    gossipsub
        .with_peer_score(score_params, gossipsub::PeerScoreThresholds::default())
        .map_err(conf)?;
    for topic in [&names.blocks, &names.txs] {
        gossipsub
            .subscribe(topic)
            .map_err(|e| conf(format!("subscribing to {topic}: {e}")))?;
    }

    let mut kad_cfg = kad::Config::new(names.kad.clone());
    // The swarm task bootstraps on its own timer (and on every newly identified peer), and
    // dials what it finds; Kademlia's built-in timer would only duplicate the queries.
    kad_cfg.set_periodic_bootstrap_interval(None);
    // We store no records; never let peers write into our store.
    kad_cfg.set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
    kad.set_mode(Some(kad::Mode::Server));

    let identify = identify::Behaviour::new(
        identify::Config::new(names.protocol_version.clone(), key.public())
            .with_agent_version(format!("provchaind/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    );
    let ping = ping::Behaviour::new(
        ping::Config::new()
            .with_interval(PING_INTERVAL)
            .with_timeout(PING_TIMEOUT),
    );
    let sync = request_response::Behaviour::with_codec(
        SyncCodec {
            max_response_bytes: cfg.max_message_bytes + RESPONSE_SLACK_BYTES,
            max_block_bytes: cfg.max_message_bytes,
        },
        [(names.sync.clone(), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(MAX_CONCURRENT_SYNC_STREAMS),
    );
    Ok(Behaviour {
        allow,
        gossipsub,
        kad,
        identify,
        ping,
        sync,
    })
}

fn build_swarm(
    cfg: &P2pConfig,
    names: &Names,
    allowed: &HashSet<PeerId>,
) -> Result<Swarm<Behaviour>, P2pError> {
    let key = identity::Keypair::ed25519_from_bytes(cfg.keypair.secret())
        .map_err(|e| P2pError::Config(format!("node key: {e}")))?;
    let behaviour = build_behaviour(&key, cfg, names, allowed)?;
    let idle = cfg.idle_timeout;
    let terr = |e: &dyn std::fmt::Display| P2pError::Transport(e.to_string());
    let swarm = match cfg.psk {
        None => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| terr(&e))?
            .with_dns()
            .map_err(|e| terr(&e))?
            .with_behaviour(move |_| behaviour)
            .map_err(|e| terr(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .with_connection_timeout(HANDSHAKE_TIMEOUT)
            .build(),
        Some(psk) => {
            let psk = libp2p::pnet::PreSharedKey::new(psk);
            SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_other_transport(
                    move |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                        let noise = noise::Config::new(key)?;
                        Ok(
                            tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                                .and_then(move |socket, _| {
                                    libp2p::pnet::PnetConfig::new(psk).handshake(socket)
                                })
                                .upgrade(Version::V1Lazy)
                                .authenticate(noise)
                                .multiplex(yamux::Config::default())
                                // A peer without the key hangs in the pnet handshake instead of failing.
                                .timeout(HANDSHAKE_TIMEOUT),
                        )
                    },
                )
                .map_err(|e| terr(&e))?
                .with_dns()
                .map_err(|e| terr(&e))?
                .with_behaviour(move |_| behaviour)
                .map_err(|e| terr(&e))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .with_connection_timeout(HANDSHAKE_TIMEOUT)
                .build()
        }
    };
    Ok(swarm)
}

fn listen_error(addr: &Multiaddr, e: libp2p::TransportError<std::io::Error>) -> P2pError {
    let port = addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    });
    if let libp2p::TransportError::Other(io) = &e
        && io.kind() == std::io::ErrorKind::AddrInUse
        && let Some(port) = port
    {
        return P2pError::PortInUse { port };
    }
    P2pError::Listen {
        addr: addr.clone(),
        reason: e.to_string(),
    }
}

/// libp2p binds listeners with `SO_REUSEPORT`, so a second node on the same port would bind
/// "successfully" and share its connections. Probe with a plain bind first to report a busy
/// port clearly.
fn probe_port(addr: &Multiaddr) -> Result<(), P2pError> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::from(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::from(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind((ip, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(P2pError::PortInUse { port }),
        Err(e) => Err(P2pError::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Starts the network thread and waits until its swarm listens (or failed to).
///
/// The swarm runs on a thread of its own with its own single-threaded tokio runtime, whose
/// reactor owns every socket of the swarm. On the node's shared runtime, a socket becoming
/// readable was noticed only when a worker next polled the I/O driver — after its current
/// task, and under load after up to 61 other task polls — so a block could sit in the kernel
/// for milliseconds while both workers served HTTP submissions. The network thread sleeps in
/// `epoll` and wakes the moment bytes arrive, and a block the chain task queues wakes it at
/// once instead of waiting for that task to yield its worker.
pub(crate) async fn spawn(
    cfg: P2pConfig,
) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>), P2pError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("provchain-p2p".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(P2pError::Transport(format!(
                        "cannot start the network runtime: {e}"
                    ))));
                    return;
                }
            };
            let stopped = runtime.block_on(async move {
                match start(cfg) {
                    Ok((service, commands, handle, events)) => {
                        if ready_tx.send(Ok((handle, events))).is_ok() {
                            return service.run(commands).await;
                        }
                        None
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        None
                    }
                }
            });
            // Connection tasks live on this runtime: dropping it closes their sockets, so a
            // caller of `shutdown` sees every connection gone when it returns.
            drop(runtime);
            if let Some(done) = stopped {
                let _ = done.send(());
            }
        })
        .map_err(|e| P2pError::Transport(format!("cannot start the network thread: {e}")))?;
    ready_rx.await.map_err(|_| P2pError::Stopped)?
}

/// What [`start`] hands back: the service to run, its command queue, and the node's ends.
type Started = (
    Service,
    mpsc::Receiver<Command>,
    P2pHandle,
    mpsc::Receiver<P2pEvent>,
);

/// Builds the swarm and binds its listeners; must run inside the network thread's runtime.
fn start(cfg: P2pConfig) -> Result<Started, P2pError> {
    if cfg.max_message_bytes < 1024 {
        return Err(P2pError::Config(format!(
            "max_message_bytes {} is too small for any block",
            cfg.max_message_bytes
        )));
    }
    if cfg.bootstrap_interval.is_zero() || cfg.heartbeat_interval.is_zero() {
        return Err(P2pError::Config(
            "bootstrap_interval and heartbeat_interval must be positive".into(),
        ));
    }
    let names = Names::new(&cfg.genesis_hash)?;
    let authorities: HashSet<PeerId> = cfg.authorities.iter().map(crate::peer_id_of).collect();
    let allowed_peers: HashSet<PeerId> = cfg.allowed_peers.iter().copied().collect();
    let allowed: HashSet<PeerId> = authorities.union(&allowed_peers).copied().collect();
    // Parse every bootstrap entry up front: a typo stops startup with a clear message.
    let bootstrap_addrs = cfg
        .bootstrap
        .iter()
        .map(|s| parse_peer_addr(s))
        .collect::<Result<Vec<_>, _>>()?;

    let mut swarm = build_swarm(&cfg, &names, &allowed)?;
    let local_peer_id = *swarm.local_peer_id();
    for addr in &cfg.listen {
        probe_port(addr)?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| listen_error(addr, e))?;
    }

    let mut bootstrap = Vec::new();
    for addr in bootstrap_addrs {
        let (addr, peer) = split_p2p(addr);
        if peer == Some(local_peer_id) {
            continue;
        }
        bootstrap.push(BootstrapPeer {
            addr,
            peer,
            pinned: peer.is_some(),
            state: BootState::Due(Instant::now()),
            backoff: INITIAL_REDIAL_BACKOFF,
        });
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let service = Service {
        swarm,
        names,
        genesis_hash: cfg.genesis_hash,
        max_message_bytes: cfg.max_message_bytes,
        bootstrap_interval: cfg.bootstrap_interval,
        local_peer_id,
        allowed,
        authorities,
        allowed_peers,
        max_strikes: cfg.max_strikes.max(1),
        ban_duration: cfg.ban_duration,
        strikes: HashMap::new(),
        banned: HashMap::new(),
        events: ev_tx,
        outbox: VecDeque::new(),
        peers: HashMap::new(),
        bootstrap,
        bootstrap_dials: HashMap::new(),
        discovered_dials: HashMap::new(),
        pending_requests: HashMap::new(),
        pending_inbound: FuturesUnordered::new(),
        listen_addrs: Vec::new(),
        waiting_listen: Vec::new(),
        stats: NetworkStats::default(),
        ping_failures: HashMap::new(),
        #[cfg(test)]
        garbage_responses: None,
    };
    Ok((
        service,
        cmd_rx,
        P2pHandle {
            commands: cmd_tx,
            local_peer_id,
        },
        ev_rx,
    ))
}

/// Splits a trailing `/p2p/<id>` off an address.
fn split_p2p(mut addr: Multiaddr) -> (Multiaddr, Option<PeerId>) {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => {
            addr.pop();
            (addr, Some(peer))
        }
        _ => (addr, None),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug)]
enum BootState {
    Due(Instant),
    Dialing,
    Connected,
    /// The entry is this node's own address.
    Local,
}

#[derive(Debug)]
struct BootstrapPeer {
    addr: Multiaddr,
    /// Known from `/p2p/<id>` or learned on the first connection.
    peer: Option<PeerId>,
    /// The id came from the configuration (`/p2p/<id>`), so it is never forgotten.
    pinned: bool,
    state: BootState,
    backoff: Duration,
}

impl BootstrapPeer {
    fn schedule_redial(&mut self) {
        self.state = BootState::Due(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_REDIAL_BACKOFF);
    }
}

struct PeerState {
    direction: Direction,
    since_ms: u64,
    remote_addr: Multiaddr,
    listen_addrs: Vec<Multiaddr>,
    /// Identify completed with a matching protocol version: `PeerConnected` was emitted.
    identified: bool,
}

struct PendingRequest {
    query: SyncQuery,
    reply: oneshot::Sender<Result<SyncResponse, P2pError>>,
}

type InboundAnswer = BoxFuture<'static, (ResponseChannel<SyncResponse>, SyncResponse)>;

struct Service {
    swarm: Swarm<Behaviour>,
    names: Names,
    genesis_hash: Hash,
    max_message_bytes: usize,
    bootstrap_interval: Duration,
    local_peer_id: PeerId,
    /// `authorities ∪ allowed_peers`: who may connect and author gossip. The allow-list
    /// behaviour holds the same set minus banned peers.
    allowed: HashSet<PeerId>,
    /// The current authority set; replaced by [`Command::SetAuthorities`].
    authorities: HashSet<PeerId>,
    /// The configured observers, allowed whatever the authority set.
    allowed_peers: HashSet<PeerId>,
    max_strikes: u32,
    ban_duration: Duration,
    /// Strikes per peer and when the last one came.
    strikes: HashMap<PeerId, (u32, Instant)>,
    /// Banned peers and when their ban ends.
    banned: HashMap<PeerId, Instant>,
    events: mpsc::Sender<P2pEvent>,
    outbox: VecDeque<P2pEvent>,
    peers: HashMap<PeerId, PeerState>,
    bootstrap: Vec<BootstrapPeer>,
    bootstrap_dials: HashMap<ConnectionId, usize>,
    discovered_dials: HashMap<PeerId, Instant>,
    pending_requests: HashMap<request_response::OutboundRequestId, PendingRequest>,
    pending_inbound: FuturesUnordered<InboundAnswer>,
    listen_addrs: Vec<Multiaddr>,
    waiting_listen: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    stats: NetworkStats,
    ping_failures: HashMap<PeerId, u32>,
    #[cfg(test)]
    garbage_responses: Option<Vec<u8>>,
}

impl Service {
    /// Runs until shut down (returning the confirmation to send once the runtime is gone) or
    /// until every handle is dropped.
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Option<oneshot::Sender<()>> {
        let mut redial = tokio::time::interval(REDIAL_TICK);
        let mut bootstrap = tokio::time::interval(self.bootstrap_interval);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        bootstrap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopped = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        stopped = Some(done);
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                Some((channel, response)) = self.pending_inbound.next(), if !self.pending_inbound.is_empty() => {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                }
                permit = self.events.clone().reserve_owned(), if !self.outbox.is_empty() => {
                    if let (Ok(permit), Some(ev)) = (permit, self.outbox.pop_front()) {
                        permit.send(ev);
                    } else {
                        self.outbox.clear();
                    }
                }
                _ = redial.tick() => {
                    self.strike_graylisted();
                    self.expire_bans();
                    self.redial_due();
                }
                _ = bootstrap.tick() => self.periodic_bootstrap(),
            }
        }
        let peer_id = self.local_peer_id;
        // Drop the swarm (listeners, connections) before confirming, so a caller may rebind
        // the port at once.
        drop(self);
        info!(%peer_id, "p2p service stopped");
        stopped
    }

    // ---- events to the node -------------------------------------------------------------

    /// Connection-level events: delayed (bounded) rather than lost when the node is slow.
    fn emit_control(&mut self, ev: P2pEvent) {
        if self.outbox.is_empty() {
            match self.events.try_send(ev) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => self.outbox.push_back(ev),
            }
        } else if self.outbox.len() < MAX_EVENT_OUTBOX {
            self.outbox.push_back(ev);
        } else {
            warn!("p2p event outbox full; dropping {ev:?}");
        }
    }

    /// Data events: refused (returns `false`) when the node cannot take them now, so the
    /// caller answers for it (gossip `Ignore`, sync "busy"). Never queued: stale gossip and
    /// requests whose requester already timed out are worthless.
    fn emit_data(&mut self, ev: P2pEvent) -> bool {
        self.outbox.is_empty() && self.events.try_send(ev).is_ok()
    }

    fn invalid(&mut self, from: PeerId, kind: &'static str, reason: String) {
        debug!(%from, kind, %reason, "invalid message");
        self.stats.invalid_messages += 1;
        self.strike(from, &format!("invalid {kind}: {reason}"));
        self.emit_control(P2pEvent::InvalidMessage { from, kind, reason });
    }

    /// Counts one misbehaviour of `peer`; at the limit, disconnects and bans it.
    fn strike(&mut self, peer: PeerId, reason: &str) {
        if peer == self.local_peer_id || self.banned.contains_key(&peer) {
            return;
        }
        let now = Instant::now();
        let entry = self.strikes.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) > crate::STRIKE_MEMORY {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        if entry.0 < self.max_strikes {
            return;
        }
        self.ban(peer, reason);
    }

    /// Disconnects `peer` and refuses it until the ban ends.
    fn ban(&mut self, peer: PeerId, reason: &str) {
        let now = Instant::now();
        self.strikes.remove(&peer);
        self.banned.insert(peer, now + self.ban_duration);
        self.stats.peers_banned += 1;
        warn!(
            %peer,
            strikes = self.max_strikes,
            ban_secs = self.ban_duration.as_secs(),
            last = reason,
            "banning a misbehaving peer"
        );
        // Closes every connection to it and refuses new ones, both ways.
        self.swarm.behaviour_mut().allow.disallow_peer(peer);
        self.emit_control(P2pEvent::PeerBanned {
            peer,
            reason: reason.to_owned(),
            duration: self.ban_duration,
        });
    }

    /// A strike per second for each connected peer whose gossip score is at the graylist
    /// threshold: gossipsub then ignores what it sends, so its messages no longer reach
    /// validation to add strikes themselves; a peer that keeps misbehaving still reaches the
    /// ban, one that stops recovers as its score decays back.
    fn strike_graylisted(&mut self) {
        let graylist = gossipsub::PeerScoreThresholds::default().graylist_threshold;
        let gossip = &self.swarm.behaviour().gossipsub;
        let now = Instant::now();
        let muted: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| gossip.peer_score(p).is_some_and(|s| s <= graylist))
            .filter(|p| {
                self.strikes
                    .get(p)
                    .is_none_or(|(_, last)| now.duration_since(*last) >= GRAYLIST_STRIKE_EVERY)
            })
            .copied()
            .collect();
        for peer in muted {
            self.strike(peer, "gossip score at the graylist threshold");
        }
    }

    /// Lets peers whose ban has ended connect again if they are still allowed (the authority
    /// set may have changed during the ban).
    fn expire_bans(&mut self) {
        let now = Instant::now();
        let ended: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in ended {
            self.banned.remove(&peer);
            if self.allowed.contains(&peer) {
                self.swarm.behaviour_mut().allow.allow_peer(peer);
            }
            info!(%peer, "ban ended");
        }
    }

    /// Follows a new authority set: admits peers that became allowed, disconnects and refuses
    /// those that no longer are. Role changes of peers that stay allowed need nothing more:
    /// `is_authority` is read from `self.authorities` whenever it is reported.
    fn set_authorities(&mut self, keys: &[PublicKey]) {
        let authorities: HashSet<PeerId> = keys.iter().map(crate::peer_id_of).collect();
        if authorities == self.authorities {
            debug!("authority set unchanged");
            return;
        }
        let allowed: HashSet<PeerId> = authorities.union(&self.allowed_peers).copied().collect();
        let local = self.local_peer_id;
        let diff = |a: &HashSet<PeerId>, b: &HashSet<PeerId>| -> Vec<PeerId> {
            a.difference(b).copied().filter(|p| *p != local).collect()
        };
        let added = diff(&authorities, &self.authorities);
        let removed = diff(&self.authorities, &authorities);
        let admitted = diff(&allowed, &self.allowed);
        let expelled = diff(&self.allowed, &allowed);
        info!(
            ?added,
            ?removed,
            ?admitted,
            ?expelled,
            authorities = authorities.len(),
            "authority set changed"
        );
        self.authorities = authorities;
        self.allowed = allowed;

        for peer in expelled {
            // Closes every connection to it and refuses new ones, both ways. A banned peer is
            // already out of the allow list; `expire_bans` will not let it back in.
            self.swarm.behaviour_mut().allow.disallow_peer(peer);
            self.discovered_dials.remove(&peer);
        }
        let now = Instant::now();
        for peer in admitted {
            if self.banned.contains_key(&peer) {
                info!(%peer, "newly allowed peer is banned; it is admitted when the ban ends");
                continue;
            }
            self.swarm.behaviour_mut().allow.allow_peer(peer);
            // Dial it now rather than at the next backoff step or bootstrap round.
            self.discovered_dials.remove(&peer);
            for b in self.bootstrap.iter_mut().filter(|b| b.peer == Some(peer)) {
                if matches!(b.state, BootState::Due(_)) {
                    b.state = BootState::Due(now);
                    b.backoff = INITIAL_REDIAL_BACKOFF;
                }
            }
            let known = self.kad_addresses(peer);
            if !known.is_empty() {
                self.dial_discovered(peer, known);
            }
        }
    }

    /// The addresses Kademlia holds for `peer` (empty when it is not in the routing table).
    fn kad_addresses(&mut self, peer: PeerId) -> Vec<Multiaddr> {
        self.swarm
            .behaviour_mut()
            .kad
            .kbucket(peer)
            .and_then(|bucket| {
                bucket
                    .iter()
                    .find(|e| *e.node.key.preimage() == peer)
                    .map(|e| e.node.value.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    // ---- commands -----------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs(reply) => {
                if self.listen_addrs.is_empty() {
                    self.waiting_listen.push(reply);
                } else {
                    let _ = reply.send(self.listen_addrs.clone());
                }
            }
            Command::Publish { topic, data, reply } => {
                let result = self.publish(topic, data);
                if let Err(e) = &result {
                    debug!(error = %e, "gossip publish failed");
                }
                let _ = reply.send(result);
            }
            Command::Report { msg, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&msg.id, &msg.source, acceptance);
                if verdict == Verdict::Reject {
                    self.strike(msg.source, "sent a message the node rejected");
                }
            }
            Command::Penalise { peer, reason } => self.strike(peer, &reason),
            Command::SetAuthorities { authorities, done } => {
                self.set_authorities(&authorities);
                let _ = done.send(());
            }
            Command::Peers(reply) => {
                let peers = self
                    .peers
                    .iter()
                    .filter(|(_, s)| s.identified)
                    .map(|(p, s)| PeerInfo {
                        peer_id: *p,
                        addresses: if s.listen_addrs.is_empty() {
                            vec![s.remote_addr.clone()]
                        } else {
                            s.listen_addrs.clone()
                        },
                        is_authority: self.authorities.contains(p),
                        direction: s.direction,
                        connected_since_ms: s.since_ms,
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Stats(reply) => {
                let mut stats = self.stats.clone();
                stats.peers = self.peers.values().filter(|s| s.identified).count();
                let blocks = self.names.blocks.hash();
                let gs = &self.swarm.behaviour().gossipsub;
                stats.block_topic_peers = gs
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&blocks))
                    .count();
                stats.block_mesh_peers = gs.mesh_peers(&blocks).count();
                let _ = reply.send(stats);
            }
            Command::Request { peer, query, reply } => {
                if !self.allowed.contains(&peer) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: "peer is not allowed".into(),
                    }));
                    return;
                }
                let request = SyncRequest {
                    genesis_hash: self.genesis_hash,
                    query: query.clone(),
                };
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending_requests
                    .insert(id, PendingRequest { query, reply });
            }
            Command::Shutdown(done) => {
                let _ = done.send(());
            }
            #[cfg(test)]
            Command::GarbageResponses(bytes) => self.garbage_responses = bytes,
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        if data.len() > self.max_message_bytes {
            return Err(P2pError::Publish(format!(
                "message of {} bytes exceeds max_message_bytes {}",
                data.len(),
                self.max_message_bytes
            )));
        }
        let topic = match topic {
            Topic::Blocks => self.names.blocks.clone(),
            Topic::Txs => self.names.txs.clone(),
        };
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), data)
        {
            Ok(_) => Ok(()),
            Err(PublishError::NoPeersSubscribedToTopic) => {
                debug!(%topic, "no peer subscribed yet; message not gossiped");
                Ok(())
            }
            Err(PublishError::Duplicate) => {
                debug!(%topic, "message already published");
                Ok(())
            }
            Err(e) => Err(P2pError::Publish(e.to_string())),
        }
    }

    // ---- dialing ------------------------------------------------------------------------

    fn redial_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.bootstrap.len() {
            let entry = &mut self.bootstrap[i];
            let BootState::Due(at) = entry.state else {
                continue;
            };
            if at > now {
                continue;
            }
            if let Some(peer) = entry.peer
                && self.peers.contains_key(&peer)
            {
                entry.state = BootState::Connected;
                entry.backoff = INITIAL_REDIAL_BACKOFF;
                continue;
            }
            let opts = match entry.peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![entry.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id()
                    .address(entry.addr.clone())
                    .build(),
            };
            let id = opts.connection_id();
            debug!(addr = %entry.addr, "dialing bootstrap peer");
            entry.state = BootState::Dialing;
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.bootstrap_dials.insert(id, i);
                }
                Err(DialError::DialPeerConditionFalse(_)) => {
                    // Already connected or being dialed by someone else (Kademlia): check later.
                    self.bootstrap[i].schedule_redial();
                }
                Err(e) => {
                    debug!(addr = %self.bootstrap[i].addr, "bootstrap dial failed: {e}");
                    self.stats.dial_failures += 1;
                    self.bootstrap[i].schedule_redial();
                }
            }
        }
    }

    fn periodic_bootstrap(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known: Vec<(PeerId, Vec<Multiaddr>)> = kad
            .kbuckets()
            .flat_map(|b| {
                b.iter()
                    .map(|e| {
                        (
                            *e.node.key.preimage(),
                            e.node.value.iter().cloned().collect(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if kad.bootstrap().is_err() {
            debug!("kademlia bootstrap skipped: no known peers yet");
        }
        for (peer, addrs) in known {
            self.dial_discovered(peer, addrs);
        }
    }

    /// Dials an allowed peer found through Kademlia if we are not connected to it.
    fn dial_discovered(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.local_peer_id
            || !self.allowed.contains(&peer)
            || self.peers.contains_key(&peer)
        {
            return;
        }
        let now = Instant::now();
        if let Some(last) = self.discovered_dials.get(&peer)
            && now.duration_since(*last) < DISCOVERED_REDIAL_MIN
        {
            return;
        }
        self.discovered_dials.insert(peer, now);
        debug!(%peer, ?addrs, "dialing discovered peer");
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts)
            && !matches!(e, DialError::DialPeerConditionFalse(_))
        {
            debug!(%peer, "dial failed: {e}");
        }
    }

    // ---- swarm events -------------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => self.on_identify(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ev)) => self.on_ping(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Allow(never)) => match never {},
            SwarmEvent::NewListenAddr { address, .. } => {
                info!("listening on {address}/p2p/{}", self.local_peer_id);
                self.listen_addrs.push(address);
                for w in self.waiting_listen.drain(..) {
                    let _ = w.send(self.listen_addrs.clone());
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address)
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                warn!(?addresses, ?reason, "listener closed");
                self.listen_addrs.retain(|a| !addresses.contains(a));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                debug!(peer = %peer_id, ?endpoint, "connection established");
                if let Some(i) = self.bootstrap_dials.remove(&connection_id) {
                    self.bootstrap[i].peer = Some(peer_id);
                }
                for b in self
                    .bootstrap
                    .iter_mut()
                    .filter(|b| b.peer == Some(peer_id))
                {
                    b.state = BootState::Connected;
                    b.backoff = INITIAL_REDIAL_BACKOFF;
                }
                if num_established.get() == 1 || !self.peers.contains_key(&peer_id) {
                    let (direction, remote_addr) = match endpoint {
                        ConnectedPoint::Dialer { address, .. } => (Direction::Outbound, address),
                        ConnectedPoint::Listener { send_back_addr, .. } => {
                            (Direction::Inbound, send_back_addr)
                        }
                    };
                    self.peers.entry(peer_id).or_insert(PeerState {
                        direction,
                        since_ms: now_ms(),
                        remote_addr,
                        listen_addrs: Vec::new(),
                        identified: false,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if num_established == 0 {
                    self.ping_failures.remove(&peer_id);
                    if let Some(state) = self.peers.remove(&peer_id)
                        && state.identified
                    {
                        self.emit_control(P2pEvent::PeerDisconnected { peer: peer_id });
                    }
                    for b in self
                        .bootstrap
                        .iter_mut()
                        .filter(|b| b.peer == Some(peer_id))
                    {
                        if matches!(b.state, BootState::Connected) {
                            b.backoff = INITIAL_REDIAL_BACKOFF;
                            b.schedule_redial();
                        }
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                peer_id,
                error,
                send_back_addr,
                ..
            } => match error {
                ListenError::Denied { cause }
                    if cause
                        .downcast_ref::<allow_block_list::NotAllowed>()
                        .is_some() =>
                {
                    self.refused(peer_id, "inbound");
                }
                ListenError::LocalPeerId { .. } => {}
                error => debug!(%send_back_addr, "inbound connection failed: {error}"),
            },
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let boot = self.bootstrap_dials.remove(&connection_id);
                match &error {
                    DialError::Denied { cause }
                        if cause
                            .downcast_ref::<allow_block_list::NotAllowed>()
                            .is_some() =>
                    {
                        self.refused(peer_id, "outbound");
                    }
                    DialError::LocalPeerId { .. } => {
                        if let Some(i) = boot {
                            info!(addr = %self.bootstrap[i].addr, "bootstrap entry is this node; skipping it");
                            self.bootstrap[i].state = BootState::Local;
                            return;
                        }
                    }
                    DialError::DialPeerConditionFalse(_) | DialError::Aborted => {}
                    DialError::WrongPeerId { obtained, .. } => {
                        self.stats.dial_failures += 1;
                        // A bootstrap address whose node was re-keyed: learn the new id.
                        if let Some(i) = boot
                            && !self.bootstrap[i].pinned
                        {
                            info!(addr = %self.bootstrap[i].addr, new = %obtained, "bootstrap peer changed identity");
                            self.bootstrap[i].peer = None;
                        }
                    }
                    error => {
                        self.stats.dial_failures += 1;
                        debug!(peer = ?peer_id, "dial failed: {error}");
                    }
                }
                if let Some(i) = boot {
                    let b = &mut self.bootstrap[i];
                    if !matches!(b.state, BootState::Connected) {
                        b.schedule_redial();
                        debug!(addr = %b.addr, backoff = ?b.backoff, "bootstrap peer unreachable; will redial");
                    }
                }
            }
            _ => {}
        }
    }

    fn refused(&mut self, peer: Option<PeerId>, direction: &str) {
        self.stats.refused_connections += 1;
        if let Some(peer) = peer {
            info!(%peer, direction, "refused connection: peer is not an authority nor an allowed peer");
            self.emit_control(P2pEvent::PeerRefused { peer });
        }
    }

    fn on_identify(&mut self, ev: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = ev else {
            return;
        };
        if info.protocol_version != self.names.protocol_version {
            warn!(peer = %peer_id, theirs = %info.protocol_version, ours = %self.names.protocol_version,
                "peer belongs to another network (genesis differs); disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        if !self.allowed.contains(&peer_id) {
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        let listen_addrs: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
            })
            .collect();
        if info.protocols.contains(&self.names.kad) {
            for addr in &listen_addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, addr.clone());
            }
        }
        let Some(state) = self.peers.get_mut(&peer_id) else {
            return;
        };
        state.listen_addrs = listen_addrs;
        if !state.identified {
            state.identified = true;
            let is_authority = self.authorities.contains(&peer_id);
            info!(peer = %peer_id, is_authority, "peer connected");
            self.emit_control(P2pEvent::PeerConnected {
                peer: peer_id,
                is_authority,
            });
            // Look for the peers it knows, so nodes seeded with one common address meet.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                self.dial_discovered(peer, addresses.into_vec());
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            } => {
                for p in ok.peers {
                    self.dial_discovered(p.peer_id, p.addrs);
                }
            }
            other => debug!(?other, "kademlia"),
        }
    }

    fn on_ping(&mut self, ev: ping::Event) {
        match ev.result {
            Ok(_) => {
                self.ping_failures.remove(&ev.peer);
            }
            Err(e) => {
                let n = self.ping_failures.entry(ev.peer).or_insert(0);
                *n += 1;
                debug!(peer = %ev.peer, failures = *n, "ping failed: {e}");
                if *n >= MAX_PING_FAILURES {
                    warn!(peer = %ev.peer, "peer stopped answering pings; closing the connection");
                    self.ping_failures.remove(&ev.peer);
                    self.swarm.close_connection(ev.connection);
                }
            }
        }
    }

    fn on_gossip(&mut self, ev: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = ev
        else {
            debug!(?ev, "gossipsub");
            return;
        };
        let msg = MessageId {
            id: message_id,
            source: propagation_source,
        };
        let is_blocks = message.topic == self.names.blocks.hash();
        let kind = if is_blocks { "block" } else { "transaction" };
        // The allow list keeps unknown peers out, but check again here: neither the relaying
        // peer nor the author of anything we process may be outside the network.
        let author_allowed = message.source.is_some_and(|a| self.allowed.contains(&a));
        if !self.allowed.contains(&propagation_source) || !author_allowed {
            self.report(&msg, MessageAcceptance::Reject);
            self.invalid(
                propagation_source,
                kind,
                format!("author {:?} is not an allowed peer", message.source),
            );
            return;
        }
        let event = if is_blocks {
            let received = std::time::Instant::now();
            wire::decode_block(&message.data).map(|block| match block {
                wire::GossipBlock::Full(block) => P2pEvent::BlockReceived {
                    from: propagation_source,
                    message_id: msg.clone(),
                    block: Box::new(block),
                    received,
                },
                wire::GossipBlock::Compact(block) => P2pEvent::CompactBlockReceived {
                    from: propagation_source,
                    message_id: msg.clone(),
                    block: Box::new(block),
                    received,
                },
            })
        } else if message.topic == self.names.txs.hash() {
            wire::decode_txs(&message.data).map(|txs| P2pEvent::TxsReceived {
                from: propagation_source,
                message_id: msg.clone(),
                txs,
            })
        } else {
            self.report(&msg, MessageAcceptance::Reject);
            self.invalid(
                propagation_source,
                "gossip",
                format!("unknown topic {}", message.topic),
            );
            return;
        };
        match event {
            Ok(ev) => {
                if !self.emit_data(ev) {
                    self.stats.dropped_gossip += 1;
                    warn!(%kind, "node is not keeping up with gossip; dropping a message");
                    self.report(&msg, MessageAcceptance::Ignore);
                }
            }
            Err(e) => {
                self.report(&msg, MessageAcceptance::Reject);
                self.invalid(propagation_source, kind, e.to_string());
            }
        }
    }

    fn report(&mut self, msg: &MessageId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&msg.id, &msg.source, acceptance);
    }

    fn on_sync(&mut self, ev: request_response::Event<SyncRequest, SyncResponse>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.on_sync_request(peer, request, channel);
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(pending) = self.pending_requests.remove(&request_id) else {
                    return;
                };
                let result = self.check_response(peer, &pending.query, response);
                let _ = pending.reply.send(result);
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(pending) = self.pending_requests.remove(&request_id) else {
                    return;
                };
                let err = match error {
                    OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        self.invalid(peer, "sync response", e.to_string());
                        P2pError::InvalidResponse {
                            peer,
                            reason: e.to_string(),
                        }
                    }
                    other => P2pError::Request {
                        peer,
                        reason: other.to_string(),
                    },
                };
                let _ = pending.reply.send(Err(err));
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound sync request failed: {error}")
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn check_response(
        &mut self,
        peer: PeerId,
        query: &SyncQuery,
        response: SyncResponse,
    ) -> Result<SyncResponse, P2pError> {
        let problem = match (query, &response) {
            (_, SyncResponse::Error(_)) => None,
            (SyncQuery::Status, SyncResponse::Status(s)) if s.genesis_hash != self.genesis_hash => {
                Some(format!(
                    "peer is on another network (genesis {})",
                    s.genesis_hash
                ))
            }
            (SyncQuery::Status, SyncResponse::Status(_)) => None,
            (SyncQuery::GetBlocks { max, .. }, SyncResponse::Blocks(b))
                if b.len() > *max as usize =>
            {
                Some(format!("{} blocks returned, {max} asked for", b.len()))
            }
            (SyncQuery::GetBlocks { .. }, SyncResponse::Blocks(_)) => None,
            _ => Some("response does not match the request".to_owned()),
        };
        match problem {
            None => Ok(response),
            Some(reason) => {
                self.invalid(peer, "sync response", reason.clone());
                Err(P2pError::InvalidResponse { peer, reason })
            }
        }
    }

    fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let sync = |s: &mut Self, channel, resp| {
            let _ = s.swarm.behaviour_mut().sync.send_response(channel, resp);
        };
        if !self.allowed.contains(&peer) {
            return;
        }
        if let SyncQuery::Invalid(reason) = request.query {
            self.invalid(peer, "sync request", reason);
            return sync(self, channel, SyncResponse::Error("invalid request".into()));
        }
        if request.genesis_hash != self.genesis_hash {
            self.invalid(
                peer,
                "sync request",
                format!(
                    "request for another network (genesis {})",
                    request.genesis_hash
                ),
            );
            return sync(
                self,
                channel,
                SyncResponse::Error("genesis mismatch".into()),
            );
        }
        #[cfg(test)]
        if let Some(bytes) = self.garbage_responses.clone() {
            return sync(self, channel, SyncResponse::Raw(bytes));
        }
        if self.pending_inbound.len() >= MAX_PENDING_INBOUND_REQUESTS {
            self.stats.busy_requests += 1;
            return sync(self, channel, SyncResponse::Error("busy".into()));
        }
        match request.query {
            SyncQuery::Status => {
                let (tx, rx) = oneshot::channel::<ChainStatus>();
                if !self.emit_data(P2pEvent::StatusRequest { peer, reply: tx }) {
                    self.stats.busy_requests += 1;
                    return sync(self, channel, SyncResponse::Error("busy".into()));
                }
                self.pending_inbound.push(Box::pin(async move {
                    let resp = match tokio::time::timeout(NODE_ANSWER_TIMEOUT, rx).await {
                        Ok(Ok(status)) => SyncResponse::Status(status),
                        _ => SyncResponse::Error("status unavailable".into()),
                    };
                    (channel, resp)
                }));
            }
            SyncQuery::GetBlocks { from_height, max } => {
                let max = max.min(MAX_SYNC_BLOCKS);
                if max == 0 {
                    return sync(self, channel, SyncResponse::Blocks(Vec::new()));
                }
                let (tx, rx) = oneshot::channel::<Vec<Block>>();
                if !self.emit_data(P2pEvent::BlocksRequest {
                    peer,
                    from_height,
                    max,
                    reply: tx,
                }) {
                    self.stats.busy_requests += 1;
                    return sync(self, channel, SyncResponse::Error("busy".into()));
                }
                let budget = self.max_message_bytes;
                self.pending_inbound.push(Box::pin(async move {
                    let resp = match tokio::time::timeout(NODE_ANSWER_TIMEOUT, rx).await {
                        Ok(Ok(blocks)) => {
                            SyncResponse::Blocks(truncate_blocks(blocks, max, budget))
                        }
                        _ => SyncResponse::Error("blocks unavailable".into()),
                    };
                    (channel, resp)
                }));
            }
            SyncQuery::Invalid(_) => {}
            #[cfg(test)]
            SyncQuery::Raw(_) => sync(self, channel, SyncResponse::Error("raw".into())),
        }
    }
}

/// Keeps at most `max` blocks whose encodings (with length prefixes) fit `budget` bytes.
pub(crate) fn truncate_blocks(mut blocks: Vec<Block>, max: u32, budget: usize) -> Vec<Block> {
    blocks.truncate(max as usize);
    let mut used = 0usize;
    let mut keep = 0;
    for b in &blocks {
        used += 4 + b.encoded_len();
        if used > budget {
            break;
        }
        keep += 1;
    }
    if keep < blocks.len() {
        debug!(
            kept = keep,
            of = blocks.len(),
            "sync response truncated to max_message_bytes"
        );
    }
    if keep == 0 && !blocks.is_empty() {
        warn!(
            size = blocks[0].encoded_len(),
            budget, "a block exceeds max_message_bytes; it cannot be served by sync"
        );
    }
    blocks.truncate(keep);
    blocks
}
