//! The HTTP API (axum): JSON everywhere, errors as `{"error": ...}` with a fitting status.
//!
//! Handlers read final data straight from the store and chain heads from the chain task's
//! snapshot; writes (transaction submission, governance proposals and votes) go through the chain
//! task. RDF parsing, SPARQL and integrity checks run on the blocking pool, never on the async
//! workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use provchain_consensus::{
    Block, Genesis, GovernanceAction, GovernanceItem, Hash, InclusionProof, Keypair, PublicKey,
    RdfFormat, Transaction, TxBody,
};
use provchain_p2p::P2pHandle;
use provchain_storage::digest::{self, CanonicalDigest};
use provchain_storage::{ParsedTx, QueryLimits, SparqlError, Store, TxDigest, rdf};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth;
use crate::chain::{ChainHandle, Clock, PendingTx, Snapshot};
use crate::governance::{AuthoritiesView, GovernanceRequest, GovernanceSubmitError, action_parts};
use crate::metrics::{HttpLabels, Metrics, RouteLabel};
use crate::work::{CheckPool, Lane};

/// Everything handlers need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub node_id: String,
    pub chain: ChainHandle,
    /// Signs and parses submissions.
    pub checks: CheckPool,
    pub store: Store,
    pub p2p: P2pHandle,
    pub metrics: Arc<Metrics>,
    pub keypair: Keypair,
    pub genesis: Genesis,
    pub genesis_hash: Hash,
    pub is_authority: bool,
    pub jwt_secret: Option<String>,
    pub max_tx_bytes: usize,
    pub query_limits: QueryLimits,
    pub clock: Clock,
}

/// An error response: status plus `{"error": message, ...extra}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    /// `Retry-After` seconds, for refusals that pass.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
            retry_after: None,
        }
    }

    /// A submission refused for now (full pool, shutting down): 503 with
    /// `Retry-After: 1`, about one block interval, when the next block has made room.
    fn busy(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        if let Some(o) = self.body.as_object_mut() {
            o.insert(key.into(), value);
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, msg)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: AppState, max_body: usize) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/blockchain/dump", get(dump))
        .route("/api/blockchain/archive", get(archive_entries))
        .route("/api/blocks", get(recent_blocks))
        .route("/api/blocks/{id}", get(one_block))
        .route(
            "/api/transactions",
            get(transactions_by_digest).post(submit),
        )
        .route("/api/transactions/{id}", get(transaction))
        .route("/api/transactions/{id}/proof", get(proof))
        .route("/sparql", get(sparql_get).post(sparql_post))
        .route("/api/integrity/validate", get(integrity))
        .route("/api/equivocations", get(equivocations))
        .route("/api/authorities", get(authorities))
        .route("/api/governance/proposals", post(propose))
        .route("/api/governance/votes", post(vote))
        .route("/metrics", get(metrics_text))
        // The web explorer (issue 9): its page and assets, and the proof check it uses.
        .route("/api/proofs/verify", post(verify_proof))
        .merge(crate::explorer::routes())
        .route_layer(middleware::from_fn_with_state(metrics, track))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The metrics endpoint alone, for the dedicated metrics port.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { prometheus_response(&m) }
        }),
    )
}

async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method,
            status,
        })
        .inc();
    metrics
        .http_request_seconds
        .get_or_create(&RouteLabel { route })
        .observe(started.elapsed().as_secs_f64());
    resp
}

fn prometheus_response(m: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        m.encode(),
    )
        .into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    prometheus_response(&s.metrics)
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    let snap = s.chain.snapshot();
    Json(json!({ "status": "ok", "node_id": s.node_id, "height": snap.best_height }))
}

/// How many blocks behind the best peer still counts as caught up.
const READY_LAG: u64 = 2;

/// The chain task publishes its snapshot at least every 100 ms; this much silence (or ten block
/// intervals, if longer) means it is stuck, e.g. on a storage write that does not return.
const STALL_MS: u64 = 10_000;

/// Whether the node should receive traffic, and why not.
fn readiness(snap: &Snapshot, now_ms: u64, interval_ms: u64) -> (bool, &'static str) {
    let behind = snap.peer_best_height.saturating_sub(snap.best_height);
    let stall = STALL_MS.max(10 * interval_ms);
    if now_ms.saturating_sub(snap.updated_ms) > stall {
        (
            false,
            "chain task stalled: no progress for too long (see the node's log)",
        )
    } else if snap
        .uncommitted_since_ms
        .is_some_and(|since| now_ms.saturating_sub(since) > stall)
    {
        (
            false,
            "storage stalled: final blocks not committed for too long (check the disk and the \
             node's log)",
        )
    } else if snap.peers == 0 && !snap.sole_authority {
        (false, "no connected peers")
    } else if behind > READY_LAG {
        (false, "syncing: behind the best peer")
    } else {
        (true, "ready")
    }
}

async fn ready(State(s): State<AppState>) -> Response {
    let snap = s.chain.snapshot();
    let (ok, reason) = readiness(&snap, s.clock.now_ms(), s.genesis.block_interval_ms);
    let body = json!({
        "ready": ok, "reason": reason, "peers": snap.peers,
        "height": snap.best_height, "peer_best_height": snap.peer_best_height,
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn status(State(s): State<AppState>) -> Json<Value> {
    let snap = s.chain.snapshot();
    Json(json!({
        "node_id": s.node_id,
        "peer_id": s.p2p.local_peer_id().to_string(),
        "public_key": s.keypair.public(),
        "network_id": s.genesis.network_id,
        "genesis_hash": s.genesis_hash,
        "is_authority": s.is_authority,
        "height": snap.best_height,
        "head_hash": snap.best_hash,
        "finalized_height": snap.final_height,
        "finalized_hash": snap.final_hash,
        "peers": snap.peers,
        "peer_best_height": snap.peer_best_height,
        "syncing": snap.peer_best_height > snap.best_height + READY_LAG,
        "pending_transactions": snap.pool_size,
        "authorities": s.genesis.authorities,
        "block_interval_ms": s.genesis.block_interval_ms,
        "epoch_length": s.genesis.governance.epoch_length,
        "proposal_ttl": s.genesis.governance.proposal_ttl,
        "triples": s.store.triple_count(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(Serialize)]
struct PeerJson {
    peer_id: String,
    addresses: Vec<String>,
    is_authority: bool,
    direction: String,
    connected_since_ms: u64,
}

async fn peers(State(s): State<AppState>) -> Json<Vec<PeerJson>> {
    let peers = s.p2p.peers().await;
    Json(
        peers
            .into_iter()
            .map(|p| PeerJson {
                peer_id: p.peer_id.to_string(),
                addresses: p.addresses.iter().map(ToString::to_string).collect(),
                is_authority: p.is_authority,
                direction: format!("{:?}", p.direction).to_lowercase(),
                connected_since_ms: p.connected_since_ms,
            })
            .collect(),
    )
}

fn block_json(b: &Block, is_final: bool, full: bool) -> Value {
    let h = &b.header;
    let txs: Value = if full {
        b.transactions
            .iter()
            .map(|t| tx_body_json(t, &t.id()))
            .collect()
    } else {
        b.transactions
            .iter()
            .map(|t| Value::String(t.id().to_hex()))
            .collect()
    };
    let mut v = json!({
        "height": h.height,
        "hash": b.hash(),
        "parent_hash": h.parent_hash,
        "slot": h.slot,
        "timestamp_ms": h.timestamp_ms,
        "proposer": h.proposer,
        "tx_root": h.tx_root,
        "signature": b.signature,
        "transactions": txs,
        "governance": b.governance.iter().map(governance_item_json).collect::<Vec<_>>(),
        "final": is_final,
    });
    if let Some(root) = h.gov_root
        && let Some(o) = v.as_object_mut()
    {
        o.insert("gov_root".into(), json!(root));
    }
    v
}

/// One governance item of a block. `id` is the item's own id; `proposal` is the proposal it
/// opens (a proposal's id, which votes name) or supports (a vote).
fn governance_item_json(item: &GovernanceItem) -> Value {
    match item {
        GovernanceItem::Proposal(p) => {
            let (action, key) = action_parts(&p.action);
            json!({
                "kind": "proposal",
                "id": item.id(),
                "signer": item.signer(),
                "proposal": p.id(),
                "action": action,
                "key": key,
                "nonce": p.nonce,
            })
        }
        GovernanceItem::Vote(v) => json!({
            "kind": "vote",
            "id": item.id(),
            "signer": item.signer(),
            "proposal": v.proposal,
        }),
    }
}

fn tx_body_json(t: &Transaction, id: &Hash) -> Value {
    json!({
        "tx_id": id,
        "format": t.body.format.name(),
        "submitter": t.body.submitter,
        "client": t.body.client,
        "timestamp_ms": t.body.timestamp_ms,
        "data": &*t.body.data,
    })
}

#[derive(Deserialize)]
struct RangeQuery {
    from: Option<u64>,
    limit: Option<usize>,
    full: Option<bool>,
}

/// Most blocks one dump response carries; page with `from` beyond that.
const DUMP_MAX: usize = 10_000;

async fn dump(State(s): State<AppState>, Query(q): Query<RangeQuery>) -> ApiResult<Json<Value>> {
    let from = q.from.unwrap_or(0);
    let limit = q.limit.unwrap_or(DUMP_MAX).min(DUMP_MAX);
    let full = q.full.unwrap_or(false);
    let store = s.store.clone();
    let blocks = tokio::task::spawn_blocking(move || store.blocks_range(from, limit))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(Json(Value::Array(
        blocks.iter().map(|b| block_json(b, true, full)).collect(),
    )))
}

/// Most blocks one archive page carries.
const ARCHIVE_PAGE_MAX: usize = 1_000;

/// Final blocks in the archive entry format (`u32` length + canonical encoding each), for
/// `provchain export --node`. Page with `from` and `limit`.
async fn archive_entries(
    State(s): State<AppState>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let from = q.from.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(ARCHIVE_PAGE_MAX).min(ARCHIVE_PAGE_MAX);
    let store = s.store.clone();
    let body = tokio::task::spawn_blocking(move || {
        store
            .blocks_range(from, limit)
            .map(|b| crate::archive::encode_entries(&b))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

async fn recent_blocks(
    State(s): State<AppState>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(20).min(1_000);
    let full = q.full.unwrap_or(false);
    let pending = s.chain.pending_blocks().await;
    let mut out: Vec<Value> = pending
        .iter()
        .take(limit)
        .map(|b| block_json(b, false, full))
        .collect();
    let snap = s.chain.snapshot();
    let remaining = limit.saturating_sub(out.len()) as u64;
    // A block committed between the two reads is listed once, as pending.
    let below_pending = pending
        .last()
        .map_or(u64::MAX, |b| b.header.height.saturating_sub(1));
    if remaining > 0 {
        let top = snap.final_height.min(below_pending);
        let from = top.saturating_sub(remaining - 1);
        let store = s.store.clone();
        let blocks = tokio::task::spawn_blocking(move || {
            store.blocks_range(from, (top - from + 1) as usize)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        out.extend(blocks.iter().rev().map(|b| block_json(b, true, full)));
    }
    Ok(Json(Value::Array(out)))
}

async fn one_block(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Value>> {
    let full = q.full.unwrap_or(false);
    let found = if let Ok(height) = id.parse::<u64>() {
        s.store.block_by_height(height).map_err(internal)?
    } else {
        let hash = Hash::from_hex(&id).map_err(|e| {
            bad_request(format!("`{id}` is neither a height nor a block hash: {e}"))
        })?;
        s.store.block_by_hash(&hash).map_err(internal)?
    };
    if let Some(b) = found {
        return Ok(Json(block_json(&b, true, full)));
    }
    let pending = s.chain.pending_blocks().await;
    let hit = pending.iter().find(|b| {
        id.parse::<u64>()
            .map_or_else(|_| b.hash().to_hex() == id, |h| b.header.height == h)
    });
    match hit {
        Some(b) => Ok(Json(block_json(b, false, full))),
        None => Err(not_found(format!("no block {id}"))),
    }
}

/// Statements one submitted transaction may carry. The byte limit alone does not bound the
/// work a document causes: Turtle collections and object lists cost two bytes per statement, so
/// a 1 MiB document can expand to a million statements, and committing that many in one block
/// takes gigabytes of memory. 50 000 leaves room for any realistic provenance record (a 1 MiB
/// N-Triples file of ordinary statements holds 10-30 000).
pub const MAX_TX_STATEMENTS: usize = 50_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitJson {
    data: String,
    format: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the bearer token when auth is on; returns the client subject.
fn authorize(s: &AppState, headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(secret) = &s.jwt_secret else {
        return Ok(None);
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            auth::AuthError::Missing.to_string(),
        ));
    };
    match auth::verify(secret.as_bytes(), token, now_secs()) {
        Ok(c) => Ok(Some(c.sub)),
        Err(e) => Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())),
    }
}

fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "request body exceeds the size limit (web.max_body_size)",
        )
    } else {
        ApiError::new(status, r.body_text())
    }
}

async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let client = authorize(&s, &headers)?;
    let body = body.map_err(body_error)?;
    // Absent: JSON (what the deployment guide's curl sends); not ASCII: refused below (415).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map_or(Some("application/json"), |v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (format, data) = if media == "application/json" {
        let req: SubmitJson = serde_json::from_slice(&body).map_err(|e| {
            s.metrics.reject_tx("bad_request");
            bad_request(format!(
                "invalid JSON body: {e}; expected {{\"data\": \"<RDF>\", \"format\": \"turtle\"}}"
            ))
        })?;
        let format = match req.format.as_deref() {
            None => RdfFormat::Turtle,
            Some(f) => RdfFormat::parse(f).ok_or_else(|| {
                s.metrics.reject_tx("bad_request");
                bad_request(format!(
                    "unknown format `{f}`; use turtle, n-triples or n-quads"
                ))
            })?,
        };
        (format, req.data)
    } else if let Some(format) = RdfFormat::parse(&media) {
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| bad_request("request body is not valid UTF-8"))?;
        (format, text)
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type `{media}`; send application/json, text/turtle, \
                 application/n-triples or application/n-quads"
            ),
        ));
    };
    if data.trim().is_empty() {
        s.metrics.reject_tx("empty");
        return Err(bad_request("the RDF document is empty"));
    }
    if data.len() > s.max_tx_bytes {
        s.metrics.reject_tx("too_large");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "RDF document is {} bytes; the limit is {} (consensus.max_tx_size)",
                data.len(),
                s.max_tx_bytes
            ),
        ));
    }
    // While the pool is full, refused before the RDF is parsed and signed: under overload the
    // work saved goes to the blocks already accepted. (Malformed requests above still get
    // their 4xx.)
    if let Some(e) = s.chain.snapshot().refusing {
        s.metrics.pool_full.inc();
        return Err(ApiError::busy(e.to_string()));
    }
    let body = TxBody {
        format,
        data: data.into(),
        submitter: s.keypair.public(),
        client,
        timestamp_ms: s.clock.now_ms(),
    };
    let (key, gh, store) = (s.keypair.clone(), s.genesis_hash, s.store.clone());
    // Sign and parse (rejecting bad RDF) off the async workers, at the priority of
    // admission work (`work.rs`). The parse is kept for the commit of the transaction's block.
    // The storage lookup of admission is done here too, off the chain task (`recent.rs`).
    let checked = s
        .checks
        .run(Lane::Clients, move || {
            let tx = Transaction::sign(body, &key, &gh);
            let id = tx.id();
            let parsed = ParsedTx::parse(&id, &tx);
            let stored_seen = match store.final_txs(&[id]) {
                Ok((seen, found)) if found == [false] => Some(seen),
                _ => None,
            };
            (id, tx, parsed, stored_seen)
        })
        .await
        .map_err(internal)?;
    s.metrics.rdf_documents_parsed.inc();
    let (id, tx, parsed, stored_seen) = checked;
    let parsed = parsed.map_err(|e| {
        s.metrics.reject_tx("invalid_rdf");
        let mut err = bad_request(format!("invalid {}: {e}", format.name()));
        if let Some(l) = e.line {
            err = err.with("line", json!(l));
        }
        if let Some(c) = e.column {
            err = err.with("column", json!(c));
        }
        err
    })?;
    let triples = parsed.statements();
    if triples > MAX_TX_STATEMENTS {
        s.metrics.reject_tx("too_many_statements");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "RDF document has {triples} statements; the limit is {MAX_TX_STATEMENTS} per \
                 transaction: split it into several transactions"
            ),
        ));
    }
    let canonical = parsed.digest().clone();
    // Every refusal (full pool, shutting down) is temporary: 503.
    s.chain
        .submit(id, tx, Arc::new(parsed), stored_seen)
        .await
        .map_err(|e| ApiError::busy(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "tx_id": id,
            "status": "pending",
            "triples": triples,
            "digest": canonical.ok().map(hex::encode),
        })),
    )
        .into_response())
}

async fn transaction(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Value>> {
    let hash = Hash::from_hex(&id)
        .map_err(|e| bad_request(format!("`{id}` is not a transaction id: {e}")))?;
    let full = q.full.unwrap_or(false);
    if let Some((tx, loc)) = s.store.transaction(&hash).map_err(internal)? {
        let block_hash = s
            .store
            .block_by_height(loc.height)
            .map_err(internal)?
            .map(|b| b.hash());
        let canonical = match s.store.tx_digest(&hash).map_err(internal)? {
            Some(TxDigest::Sha256(d)) => Some(Ok(d)),
            Some(TxDigest::Unavailable(why)) => Some(Err(why)),
            None => None,
        };
        return Ok(Json(tx_json(
            &tx,
            &hash,
            "final",
            Some(loc.height),
            block_hash,
            Some(loc.triples as usize),
            canonical,
            full,
        )));
    }
    let pending = s
        .chain
        .pending_tx(hash)
        .await
        .ok_or_else(|| not_found(format!("no transaction {id}")))?;
    let (tx, status, height, block) = match pending {
        PendingTx::InPool(tx) => (tx, "pending", None, None),
        PendingTx::Included {
            tx,
            block_hash,
            height,
        } => (tx, "included", Some(height), Some(block_hash)),
    };
    let counted = tx.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        rdf::parse(counted.body.format, &counted.body.data, "count")
            .ok()
            .map(|q| {
                (
                    q.len(),
                    digest::canonical_digest(&q).map_err(|e| e.to_string()),
                )
            })
    })
    .await
    .map_err(internal)?;
    let (triples, canonical) = parsed.unzip();
    Ok(Json(tx_json(
        &tx, &hash, status, height, block, triples, canonical, full,
    )))
}

/// An inclusion proof for a final transaction, checkable offline (`provchain verify --proof`).
async fn proof(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let hash = Hash::from_hex(&id)
        .map_err(|e| bad_request(format!("`{id}` is not a transaction id: {e}")))?;
    if let Some((_, loc)) = s.store.transaction(&hash).map_err(internal)? {
        let block = s
            .store
            .block_by_height(loc.height)
            .map_err(internal)?
            .ok_or_else(|| {
                internal(format!(
                    "block {} of transaction {id} is missing",
                    loc.height
                ))
            })?;
        let proof =
            InclusionProof::build(&s.genesis, &block, loc.index as usize).ok_or_else(|| {
                internal(format!(
                    "transaction {id} is not at index {} of its block",
                    loc.index
                ))
            })?;
        return Ok(Json(serde_json::to_value(proof).map_err(internal)?));
    }
    match s.chain.pending_tx(hash).await {
        Some(p) => {
            let status = if matches!(p, PendingTx::InPool(_)) {
                "pending"
            } else {
                "included"
            };
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("transaction {id} is {status}, not final: proofs are issued for final transactions only"),
            )
            .with("status", json!(status)))
        }
        None => Err(not_found(format!("no transaction {id}"))),
    }
}

#[derive(Deserialize)]
struct DigestQuery {
    digest: Option<String>,
    limit: Option<usize>,
}

/// Most transactions one digest lookup returns.
const DIGEST_LOOKUP_MAX: usize = 1000;

/// Final transactions whose documents have the given canonical digest (`?digest=<hex>`).
async fn transactions_by_digest(
    State(s): State<AppState>,
    Query(q): Query<DigestQuery>,
) -> ApiResult<Json<Value>> {
    let given = q.digest.ok_or_else(|| {
        bad_request(
            "missing `digest` parameter: GET /api/transactions?digest=<64 hex digits> finds \
             final transactions by the canonical digest of their statements",
        )
    })?;
    let digest: CanonicalDigest = hex::decode(given.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            bad_request(format!(
                "`{given}` is not a canonical digest: expected 64 hex digits (SHA-256)"
            ))
        })?;
    let limit = q.limit.unwrap_or(100).clamp(1, DIGEST_LOOKUP_MAX);
    let store = s.store.clone();
    // Index scan and one header read per match: off the async workers.
    let txs = tokio::task::spawn_blocking(move || {
        let found = store.transactions_by_digest(&digest, limit)?;
        let mut txs = Vec::with_capacity(found.len());
        for (id, loc) in found {
            let block_hash = store.header_by_height(loc.height)?.map(|h| h.hash());
            txs.push(json!({
                "tx_id": id,
                "status": "final",
                "block_height": loc.height,
                "block_hash": block_hash,
                "index": loc.index,
                "triples": loc.triples,
            }));
        }
        Ok::<_, provchain_storage::StorageError>(txs)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(Json(json!({
        "digest": hex::encode(digest),
        "transactions": txs,
        "indexed_from_height": s.store.digests_from(),
    })))
}

/// A transaction's JSON. `canonical` is its document's canonical digest, or why it has none;
/// `None` when unknown (committed before this database had a digest index).
#[allow(clippy::too_many_arguments)]
fn tx_json(
    tx: &Transaction,
    id: &Hash,
    status: &str,
    height: Option<u64>,
    block_hash: Option<Hash>,
    triples: Option<usize>,
    canonical: Option<Result<CanonicalDigest, String>>,
    full: bool,
) -> Value {
    let (digest, why) = match canonical {
        Some(Ok(d)) => (Some(hex::encode(d)), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, None),
    };
    let mut v = json!({
        "tx_id": id,
        "status": status,
        "block_height": height,
        "block_hash": block_hash,
        "submitter": tx.body.submitter,
        "client": tx.body.client,
        "timestamp_ms": tx.body.timestamp_ms,
        "format": tx.body.format.name(),
        "triples": triples,
        "digest": digest,
    });
    if let Some(why) = why
        && let Some(o) = v.as_object_mut()
    {
        o.insert("digest_unavailable".into(), Value::String(why));
    }
    if full && let Some(o) = v.as_object_mut() {
        o.insert("data".into(), Value::String(tx.body.data.to_string()));
    }
    v
}

async fn sparql_get(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let query = q
        .get("query")
        .cloned()
        .ok_or_else(|| bad_request("missing `query` parameter"))?;
    run_sparql(s, query).await
}

async fn sparql_post(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(body_error)?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let query = match media.as_str() {
        "application/sparql-query" | "text/plain" | "" => {
            String::from_utf8(body.to_vec()).map_err(|_| bad_request("query is not valid UTF-8"))?
        }
        "application/x-www-form-urlencoded" => {
            let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body)
                .map_err(|e| bad_request(format!("invalid form body: {e}")))?;
            form.get("query")
                .cloned()
                .ok_or_else(|| bad_request("missing `query` form field"))?
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type `{other}`; use application/sparql-query or a form"
                ),
            ));
        }
    };
    run_sparql(s, query).await
}

async fn run_sparql(s: AppState, query: String) -> ApiResult<Response> {
    let store = s.store.clone();
    let limits = s.query_limits;
    let out = tokio::task::spawn_blocking(move || store.sparql(&query, &limits))
        .await
        .map_err(internal)?;
    match out {
        Ok(o) => Ok(([(header::CONTENT_TYPE, o.content_type)], o.body).into_response()),
        Err(SparqlError::Parse(m)) => Err(bad_request(format!("invalid SPARQL: {m}"))),
        Err(e @ SparqlError::Timeout(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e @ SparqlError::TooManyRows(_)) => Err(bad_request(format!("{e}; add a LIMIT"))),
        Err(e) => Err(internal(e)),
    }
}

/// Recorded evidence of authorities sealing two blocks for one slot, oldest first.
async fn equivocations(State(s): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(s.chain.equivocations().await).unwrap_or(Value::Null))
}

/// The authority set in force for the next block on the best chain, decided changes waiting for
/// their switch height, open proposals, and this node's proposals and votes not yet in a block.
async fn authorities(State(s): State<AppState>) -> ApiResult<Json<AuthoritiesView>> {
    let view = s.chain.authorities().await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the chain task is not running (the node is shutting down); retry on a running node",
        )
    })?;
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeJson {
    action: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteJson {
    proposal: String,
}

/// A governance request body: JSON whatever the content type says, so `curl -d '{...}'` (which
/// labels the body as a form) works as written.
fn governance_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> ApiResult<T> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("invalid JSON body: {e}; expected {expected}")))
}

/// The chain task's refusal as a response: 403 when this node may not sign governance items,
/// 409 when the chain state refuses the item (unknown, expired or decided proposal, a key already
/// in or not in the set, a duplicate…), 503 when the node is shutting down.
fn governance_error(e: GovernanceSubmitError) -> ApiError {
    match e {
        GovernanceSubmitError::NotAuthority { height } => {
            ApiError::new(StatusCode::FORBIDDEN, e.to_string()).with("height", json!(height))
        }
        GovernanceSubmitError::Invalid(reason) => ApiError::new(StatusCode::CONFLICT, reason),
        GovernanceSubmitError::Closed => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// Has the chain task sign `request` with this node's key for its next block; 202 with the
/// item's ids and `"status": "pending"`.
async fn sign_governance(s: &AppState, request: GovernanceRequest) -> ApiResult<Response> {
    let accepted = s
        .chain
        .governance(request)
        .await
        .map_err(governance_error)?;
    let mut v = serde_json::to_value(&accepted).map_err(internal)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), json!("pending"));
    }
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

/// `POST /api/governance/proposals` `{"action": "add"|"remove", "key": "<hex public key>"}`:
/// this node proposes the change, signed with its key, in its next block.
async fn propose(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    authorize(&s, &headers)?;
    const EXPECTED: &str = r#"{"action": "add" or "remove", "key": "<64 hex digits>"}"#;
    let req: ProposeJson = governance_body(body, EXPECTED)?;
    let key = PublicKey::from_hex(&req.key).map_err(|e| {
        bad_request(format!(
            "`key` is not an ed25519 public key: {e}; give the 64 hex digits that `provchain keygen` \
             and `provchain key inspect` print"
        ))
    })?;
    let action = match req.action.trim().to_ascii_lowercase().as_str() {
        "add" => GovernanceAction::Add(key),
        "remove" => GovernanceAction::Remove(key),
        other => {
            return Err(bad_request(format!(
                "unknown action `{other}`; use \"add\" or \"remove\""
            )));
        }
    };
    sign_governance(&s, GovernanceRequest::Propose(action)).await
}

/// `POST /api/governance/votes` `{"proposal": "<hex proposal id>"}`: this node supports an open
/// proposal that a block on its best chain carries, with a vote in its next block.
async fn vote(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    authorize(&s, &headers)?;
    let req: VoteJson = governance_body(body, r#"{"proposal": "<64 hex digits proposal id>"}"#)?;
    let proposal = Hash::from_hex(&req.proposal).map_err(|e| {
        bad_request(format!(
            "`proposal` is not a proposal id: {e}; give the id `provchain authority list` shows"
        ))
    })?;
    sign_governance(&s, GovernanceRequest::Vote(proposal)).await
}

async fn integrity(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    // Long chains: log progress every 5% so operators can follow a validation in the logs.
    let report = tokio::task::spawn_blocking(move || {
        let mut last = 0;
        store.validate_integrity(&mut |done, total| {
            if total >= 1_000 && done * 20 / total.max(1) > last {
                last = done * 20 / total.max(1);
                tracing::info!(done, total, "integrity validation progress");
            }
        })
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(Json(serde_json::to_value(report).map_err(internal)?))
}

/// Checks an inclusion proof (the JSON of `GET /api/transactions/{id}/proof`) with
/// [`InclusionProof::verify`]: 200 with the claim it establishes, or 422 with the reason it fails.
/// For the explorer; `provchain verify --proof` does the same offline.
async fn verify_proof(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let body = body.map_err(body_error)?;
    let unprocessable = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    let proof: InclusionProof = serde_json::from_slice(&body)
        .map_err(|e| unprocessable(format!("not an inclusion proof: {e}")))?;
    let claim = proof.verify().map_err(|e| unprocessable(e.to_string()))?;
    Ok(Json(serde_json::to_value(claim).map_err(internal)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(peers: usize, sole: bool, best: u64, peer_best: u64, updated_ms: u64) -> Snapshot {
        Snapshot {
            best_height: best,
            peers,
            peer_best_height: peer_best,
            sole_authority: sole,
            updated_ms,
            ..Snapshot::default()
        }
    }

    #[test]
    fn readiness_reasons() {
        let now = 1_000_000;
        assert!(readiness(&snap(2, false, 10, 11, now), now, 1000).0);
        assert!(readiness(&snap(0, true, 10, 0, now), now, 1000).0);
        assert_eq!(
            readiness(&snap(0, false, 10, 0, now), now, 1000),
            (false, "no connected peers")
        );
        assert_eq!(
            readiness(&snap(2, false, 10, 13, now), now, 1000),
            (false, "syncing: behind the best peer")
        );
        // A chain task that stopped publishing is reported even when all else looks fine.
        let stuck = snap(2, false, 10, 10, now - 10_001);
        assert!(
            readiness(&stuck, now, 1000)
                .1
                .starts_with("chain task stalled")
        );
        // Long block intervals stretch the allowance.
        assert!(readiness(&stuck, now, 5_000).0);
        let stuck_long = snap(2, false, 10, 10, now - 50_001);
        assert!(!readiness(&stuck_long, now, 5_000).0);
        // Final blocks waiting for storage: a commit in progress is fine, a stuck one is not.
        let mut committing = snap(2, false, 10, 10, now);
        committing.uncommitted_since_ms = Some(now - 2_000);
        assert!(readiness(&committing, now, 1000).0);
        committing.uncommitted_since_ms = Some(now - 10_001);
        assert!(
            readiness(&committing, now, 1000)
                .1
                .starts_with("storage stalled")
        );
    }
}
