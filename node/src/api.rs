//! HTTP API on BigchainDB's v1 paths (port 9984) and the websocket stream of valid
//! transactions (port 9985). Every path answers with and without a trailing slash, any
//! Content-Type is accepted on POST, and every error is JSON `{"status", "message"}` saying
//! what was wrong.

use crate::block::Decision;
use crate::node::{Node, SubmitError};
use crate::tx::{is_hex64, is_public_key};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

type Params = Query<HashMap<String, String>>;
type AppState = State<Arc<Node>>;

/// An error response in BigchainDB's shape.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"status": self.0.as_u16(), "message": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "Not found".into())
}

fn internal(e: anyhow::Error) -> ApiError {
    tracing::error!("internal error: {e:#}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e:#}"))
}

type ApiResult = Result<Response, ApiError>;

/// Builds the HTTP API router.
pub fn router(node: Arc<Node>) -> Router {
    let limit = node.config.server.max_body_bytes;
    let mut r = Router::new().route("/", get(root));
    let routes: [(&str, axum::routing::MethodRouter<Arc<Node>>); 11] = [
        ("/api/v1", get(api_v1)),
        ("/api/v1/transactions", get(list_transactions).post(post_transaction)),
        ("/api/v1/transactions/{id}", get(get_transaction)),
        ("/api/v1/outputs", get(outputs)),
        ("/api/v1/statuses", get(statuses)),
        ("/api/v1/assets", get(assets)),
        ("/api/v1/metadata", get(metadata)),
        ("/api/v1/blocks", get(list_blocks)),
        ("/api/v1/blocks/{id}", get(get_block)),
        ("/api/v1/votes", get(votes)),
        ("/api/v1/validators", get(validators)),
    ];
    for (path, handler) in routes {
        r = r.route(path, handler.clone()).route(&format!("{path}/"), handler);
    }
    // With metrics off, requests skip the timing layer entirely.
    if node.metrics.enabled() {
        r = r.route_layer(axum::middleware::from_fn_with_state(node.clone(), timed));
    }
    r.fallback(|| async { not_found() })
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::cors::CorsLayer::permissive())
        .with_state(node)
}

/// Builds the websocket router (`/api/v1/streams/valid_transactions`).
pub fn ws_router(node: Arc<Node>) -> Router {
    let h = get(|ws: WebSocketUpgrade, State(node): AppState| async move { ws.on_upgrade(move |s| stream(s, node)) });
    Router::new()
        .route("/api/v1/streams/valid_transactions", h.clone())
        .route("/api/v1/streams/valid_transactions/", h)
        .fallback(|| async { not_found() })
        .with_state(node)
}

/// Times a sampled share of requests (`api.request_us`, tagged with the route without its
/// trailing slash, and the status).
async fn timed(State(node): AppState, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !node.metrics.sample() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().trim_end_matches('/').to_string()).unwrap_or_default();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let us = started.elapsed().as_micros() as u64;
    node.metrics.send_sampled_time(crate::metrics::name::API_REQUEST_US, us, &[("route", if route.is_empty() { "/" } else { &route }), ("status", resp.status().as_str())]);
    resp
}

async fn stream(socket: WebSocket, node: Arc<Node>) {
    node.stats.ws_clients.fetch_add(1, Ordering::Relaxed);
    serve_stream(socket, &node).await;
    node.stats.ws_clients.fetch_sub(1, Ordering::Relaxed);
}

/// Most events written to a websocket client with one flush (one socket write).
const EVENTS_PER_FLUSH: usize = 1024;

async fn serve_stream(mut socket: WebSocket, node: &Node) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut rx = node.subscribe();
    // A client too slow to keep up is dropped rather than slowing the node.
    let lagged = |n: u64| tracing::warn!(missed = n, "websocket client lagged; closing it");
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(text) => {
                    // Events come in bursts (a block's transactions at once): queue every one
                    // already waiting as its own frame, then write them with one flush, instead
                    // of a socket write (and a wake-up of the client) per transaction.
                    if socket.feed(Message::Text(text.as_ref().into())).await.is_err() {
                        return;
                    }
                    for _ in 1..EVENTS_PER_FLUSH {
                        match rx.try_recv() {
                            Ok(text) => if socket.feed(Message::Text(text.as_ref().into())).await.is_err() { return },
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Lagged(n)) => return lagged(n),
                            Err(TryRecvError::Closed) => return,
                        }
                    }
                    if socket.flush().await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => return lagged(n),
                Err(RecvError::Closed) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

/// The v1 endpoint links under `prefix`: `/api/v1/` in `GET /`, `/` in `GET /api/v1/`
/// (BigchainDB's `ApiV1Index` lists paths relative to the API root).
fn api_v1_links(node: &Node, prefix: &str) -> Value {
    let ws = &node.config.wsserver;
    json!({
        "docs": "README.md, section \"HTTP API\"",
        "transactions": format!("{prefix}transactions/"),
        "statuses": format!("{prefix}statuses/"),
        "assets": format!("{prefix}assets/"),
        "metadata": format!("{prefix}metadata/"),
        "outputs": format!("{prefix}outputs/"),
        "blocks": format!("{prefix}blocks/"),
        "votes": format!("{prefix}votes/"),
        "validators": format!("{prefix}validators"),
        "streams": format!("{}://{}:{}/api/v1/streams/valid_transactions", ws.advertised_scheme, ws.advertised_host, ws.advertised_port),
    })
}

async fn root(State(node): AppState) -> Json<Value> {
    let (backlog, blocks, committed) = node.store.counts().unwrap_or_default();
    let (digest, applied) = node.store.state_digest().unwrap_or_default();
    Json(json!({
        "api": {"v1": api_v1_links(&node, "/api/v1/")},
        "docs": "README.md",
        "software": "Cairn",
        "version": env!("CARGO_PKG_VERSION"),
        "public_key": node.key.public_b58,
        "keyring": node.config.keyring,
        "engine": node.engine.name(),
        "partitions": node.engine.partitions(),
        "state": {"applied_height": applied, "digest": digest},
        "stats": {
            "backlog": backlog, "blocks": blocks, "committed": committed, "in_flight": node.inflight_len(),
            "since_start": {
                "accepted": node.stats.accepted.load(Ordering::Relaxed),
                "rejected": node.stats.rejected.load(Ordering::Relaxed),
                "blocks_built": node.stats.blocks_built.load(Ordering::Relaxed),
            },
        },
    }))
}

async fn api_v1(State(node): AppState) -> Json<Value> {
    Json(api_v1_links(&node, "/"))
}

/// The voting members (the keyring, this node included) in BigchainDB 2.x's validator shape:
/// the raw 32-byte Ed25519 key as upper-case hex, one vote each.
async fn validators(State(node): AppState) -> ApiResult {
    let mut out = Vec::with_capacity(node.federation.len());
    for k in &node.federation {
        let raw = crate::crypto::decode_public_key(k).map_err(|e| internal(anyhow::anyhow!("keyring entry {k}: {e}")))?;
        let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
        out.push(json!({"pub_key": {"data": hex, "type": "ed25519"}, "power": 1}));
    }
    Ok(Json(out).into_response())
}

/// Rejects parameters the endpoint does not know, as BigchainDB's strict endpoints do.
fn only_params(p: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    let unknown: Vec<&str> = p.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(bad(format!("Unknown arguments: {} (allowed: {})", unknown.join(", "), allowed.join(", "))))
    }
}

fn txid_param(p: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => {
            let v = v.to_ascii_lowercase();
            if is_hex64(&v) {
                Ok(Some(v))
            } else {
                Err(bad(format!("Invalid hash in {name}: expected 64 hex characters")))
            }
        }
    }
}

fn bool_param(p: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ApiError> {
    match p.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(_) => Err(bad(format!("{name}: Boolean value must be \"true\" or \"false\" (lowercase)"))),
    }
}

fn tx_json(node: &Node, id: &str) -> Result<Option<Value>, ApiError> {
    match node.store.tx_body(id).map_err(internal)? {
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| internal(e.into()))?)),
        None => Ok(None),
    }
}

async fn post_transaction(State(node): AppState, Query(p): Params, body: Result<Bytes, BytesRejection>) -> ApiResult {
    only_params(&p, &["mode"])?;
    let mode = p.get("mode").map(|m| m.to_ascii_lowercase()).unwrap_or_else(|| "async".into());
    if !["async", "sync", "commit"].contains(&mode.as_str()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("mode {mode:?} is not one of async, sync, commit")));
    }
    let body = body.map_err(|e| {
        ApiError(
            e.status(),
            format!("{}; the limit is {} bytes (server.max_body_bytes)", e.body_text(), node.config.server.max_body_bytes),
        )
    })?;
    let submitted = node.submit(&body, mode == "commit").await;
    let crate::node::Submitted { tx, canonical, waiter } = match submitted {
        Ok(ok) => ok,
        Err(SubmitError::Invalid(e)) => {
            node.stats.reject(e.class());
            return Err(bad(e.http_message()));
        }
        Err(SubmitError::Unavailable(m)) => {
            node.stats.reject("Unavailable");
            return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, m));
        }
    };
    if let Some(w) = waiter {
        let timeout = Duration::from_secs(node.config.server.commit_timeout_secs);
        match tokio::time::timeout(timeout, w).await {
            Ok(Ok(Decision::Valid)) => {}
            Ok(Ok(_)) => return Err(bad(format!("Transaction {} was accepted but its block was decided invalid", tx.id))),
            Ok(Err(_)) | Err(_) => {
                return Err(ApiError(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "transaction {} is accepted (durable in the backlog) but was not committed within {}s; follow it at /api/v1/statuses?transaction_id={}",
                        tx.id, timeout.as_secs(), tx.id
                    ),
                ))
            }
        }
    }
    let location = format!("../statuses?transaction_id={}", tx.id);
    let mut resp = (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], canonical).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn get_transaction(State(node): AppState, Path(id): Path<String>) -> ApiResult {
    // BigchainDB answers 404 for any id it does not hold, well-formed or not (the driver maps
    // 404 to NotFoundError); a malformed id can never be held.
    let id = id.to_ascii_lowercase();
    if !is_hex64(&id) {
        return Err(not_found());
    }
    if node.store.committed_height(&id).map_err(internal)?.is_none() {
        return Err(not_found());
    }
    Ok(Json(tx_json(&node, &id)?.ok_or_else(not_found)?).into_response())
}

async fn list_transactions(State(node): AppState, Query(p): Params) -> ApiResult {
    only_params(&p, &["asset_id", "operation", "last_tx"])?;
    let asset_id = txid_param(&p, "asset_id")?
        .ok_or_else(|| bad("Missing required parameter asset_id: GET /api/v1/transactions?asset_id=<id>[&operation=CREATE|TRANSFER]"))?;
    let op = match p.get("operation").map(|o| o.to_ascii_uppercase()) {
        None => None,
        Some(o) if o == "CREATE" || o == "TRANSFER" => Some(o),
        Some(o) => return Err(bad(format!("operation {o:?} must be CREATE or TRANSFER"))),
    };
    let last_tx = bool_param(&p, "last_tx")?.unwrap_or(false);
    let mut ids = node.store.txs_of_asset(&asset_id).map_err(internal)?;
    let mut with_height = Vec::with_capacity(ids.len());
    for id in ids.drain(..) {
        let h = node.store.committed_height(&id).map_err(internal)?.unwrap_or(u64::MAX);
        with_height.push((h, id));
    }
    with_height.sort();
    let mut out = Vec::new();
    for (_, id) in with_height {
        if let Some(tx) = tx_json(&node, &id)? {
            if op.as_deref().is_none_or(|o| tx["operation"] == o) {
                out.push(tx);
            }
        }
    }
    if last_tx {
        out = out.pop().into_iter().collect();
    }
    Ok(Json(out).into_response())
}

async fn outputs(State(node): AppState, Query(p): Params) -> ApiResult {
    only_params(&p, &["public_key", "spent"])?;
    let pk = p.get("public_key").ok_or_else(|| bad("Missing required parameter public_key: GET /api/v1/outputs?public_key=<base58>[&spent=true|false]"))?;
    if !is_public_key(pk) {
        return Err(bad(format!("public_key {pk:?} is not a base58 Ed25519 public key")));
    }
    let spent = bool_param(&p, "spent")?;
    let outs = node.store.outputs_of_key(pk, spent).map_err(internal)?;
    Ok(Json(outs.into_iter().map(|o| json!({"transaction_id": o.txid, "output_index": o.index})).collect::<Vec<_>>()).into_response())
}

async fn statuses(State(node): AppState, Query(p): Params) -> ApiResult {
    only_params(&p, &["transaction_id", "block_id"])?;
    match (txid_param(&p, "transaction_id")?, txid_param(&p, "block_id")?) {
        (Some(tx), None) => {
            let s = node.store.tx_status(&tx).map_err(internal)?.ok_or_else(not_found)?;
            Ok(Json(json!({"status": s})).into_response())
        }
        (None, Some(b)) => {
            let h = node.store.block_height(&b).map_err(internal)?.ok_or_else(not_found)?;
            let s = node.store.block_status(h).map_err(internal)?.ok_or_else(not_found)?;
            Ok(Json(json!({"status": s.as_str()})).into_response())
        }
        _ => Err(bad("Provide exactly one query parameter. Choices are: block_id, transaction_id")),
    }
}

fn search(node: &Node, p: &HashMap<String, String>, metadata: bool) -> ApiResult {
    only_params(p, &["search", "limit"])?;
    let q = p.get("search").map(|s| s.trim()).unwrap_or("");
    if q.is_empty() {
        return Err(bad("text_search cannot be empty: pass ?search=<words>"));
    }
    let limit = match p.get("limit") {
        None => 1000,
        // 0 means "no limit", as in BigchainDB (the driver sends it by default).
        Some(l) => match l.parse::<usize>() {
            Ok(0) => usize::MAX,
            Ok(n) => n,
            Err(_) => return Err(bad(format!("limit {l:?} must be a non-negative integer"))),
        },
    };
    let ids = node.store.search(q, metadata, limit).map_err(internal)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(tx) = tx_json(node, &id)? {
            out.push(if metadata {
                json!({"id": id, "metadata": tx["metadata"]})
            } else {
                json!({"id": id, "data": tx["asset"]["data"]})
            });
        }
    }
    Ok(Json(out).into_response())
}

async fn assets(State(node): AppState, Query(p): Params) -> ApiResult {
    search(&node, &p, false)
}

async fn metadata(State(node): AppState, Query(p): Params) -> ApiResult {
    search(&node, &p, true)
}

async fn list_blocks(State(node): AppState, Query(p): Params) -> ApiResult {
    only_params(&p, &["transaction_id", "status"])?;
    let tx = txid_param(&p, "transaction_id")?.ok_or_else(|| bad("Missing required parameter transaction_id: GET /api/v1/blocks?transaction_id=<id>"))?;
    let status = match p.get("status").map(|s| s.to_ascii_lowercase()) {
        None => None,
        Some(s) if ["valid", "invalid", "undecided"].contains(&s.as_str()) => Some(s),
        Some(s) => return Err(bad(format!("status {s:?} must be valid, invalid or undecided"))),
    };
    let mut out = Vec::new();
    for h in node.store.blocks_with_tx(&tx).map_err(internal)? {
        let s = node.store.block_status(h).map_err(internal)?.map(|d| d.as_str());
        if status.as_deref().is_none_or(|want| Some(want) == s) {
            out.push(h);
        }
    }
    Ok(Json(out).into_response())
}

/// `/blocks/{height}` (BigchainDB 2.x) or `/blocks/{block_id}` (1.x): the header, its status,
/// and the full transactions.
async fn get_block(State(node): AppState, Path(id): Path<String>) -> ApiResult {
    let height = if let Ok(h) = id.parse::<u64>() {
        h
    } else if is_hex64(&id.to_ascii_lowercase()) {
        node.store.block_height(&id.to_ascii_lowercase()).map_err(internal)?.ok_or_else(not_found)?
    } else {
        return Err(not_found());
    };
    let b = node.store.block(height).map_err(internal)?.ok_or_else(not_found)?;
    let mut txs = Vec::with_capacity(b.block.transactions.len());
    for id in &b.block.transactions {
        txs.push(tx_json(&node, id)?.unwrap_or(Value::Null));
    }
    let status = node.store.block_status(height).map_err(internal)?.unwrap_or(Decision::Undecided);
    let mut v = crate::block::block_json(&b);
    v["height"] = json!(height);
    v["transactions"] = Value::Array(txs);
    v["status"] = json!(status.as_str());
    Ok(Json(v).into_response())
}

async fn votes(State(node): AppState, Query(p): Params) -> ApiResult {
    only_params(&p, &["block_id"])?;
    let b = txid_param(&p, "block_id")?.ok_or_else(|| bad("Missing required parameter block_id: GET /api/v1/votes?block_id=<id>"))?;
    let Some(h) = node.store.block_height(&b).map_err(internal)? else { return Ok(Json(json!([])).into_response()) };
    Ok(Json(node.store.votes(h).map_err(internal)?).into_response())
}
