//! The HTTP client every part of loadgen shares (keep-alive pool, no TLS: nodes sit behind
//! the operator's network) and the one-line JSON GET used by preflight, the gate and faults.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// A pooled HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client keeping up to `idle` connections per host open.
pub fn client(idle: usize) -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(idle).build(c)
}

/// GETs `url` and parses JSON; `Ok(None)` on 404. Errors say which URL and what to check.
pub async fn get_json(client: &HttpClient, url: &str) -> Result<Option<Value>> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .with_context(|| format!("{url} did not answer within 30 s"))?
        .with_context(|| format!("cannot reach {url}: is the node running?"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.with_context(|| format!("reading the answer of {url}"))?.to_bytes();
    if status == 404 {
        return Ok(None);
    }
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>());
    }
    serde_json::from_slice(&body).map(Some).with_context(|| format!("{url} did not answer JSON"))
}

/// The reason a node gave for refusing a transaction, short enough to count by: the status and
/// BigchainDB's error class (`400 DoubleSpend`), or the start of the message.
pub fn reason(status: u16, body: &[u8]) -> String {
    let msg = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["message"].as_str().map(str::to_string)).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let class = if let Some(rest) = msg.strip_prefix("Invalid transaction (") {
        rest.split(')').next().unwrap_or("").to_string()
    } else if msg.starts_with("Invalid transaction schema") {
        "SchemaValidationError".into()
    } else {
        msg.chars().take(60).collect()
    };
    format!("{status} {class}")
}
