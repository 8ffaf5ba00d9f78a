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

/// Open files kept aside for everything but the workers' connections (websockets, results,
/// the runtime, helper processes' pipes).
const SPARE_FILES: u64 = 256;

/// Makes room for `connections` sockets (loadgen opens `--concurrency` per target): raises the
/// soft open-file limit toward the hard one when needed, since an `EMFILE` mid-run would
/// surface as failed sends instead of a clear message. Refuses, with what to do, when the hard
/// limit is too low. Returns the soft limit in force.
pub fn ensure_open_files(connections: usize) -> Result<u64> {
    let need = (connections as u64).saturating_add(SPARE_FILES);
    let (soft, hard) = rlimit::Resource::NOFILE.get().context("cannot read the open-file limit")?;
    if soft >= need {
        return Ok(soft);
    }
    if hard < need {
        anyhow::bail!(
            "{connections} connections (--concurrency × targets) need about {need} open files, but this shell allows at most {hard}: \
             raise the hard limit (`ulimit -Hn {need}` as root, or LimitNOFILE in a systemd unit) or lower --concurrency"
        );
    }
    if let Err(e) = rlimit::Resource::NOFILE.set(need, hard) {
        anyhow::bail!("cannot raise the open-file limit to {need} for {connections} connections: {e}; run `ulimit -n {need}` first");
    }
    Ok(need)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nofile() -> (u64, u64) {
        rlimit::Resource::NOFILE.get().unwrap()
    }

    #[test]
    fn open_files_are_raised_for_the_connections_or_refused_with_what_to_do() {
        let hard = nofile().1;
        assert!(hard >= 1_300, "this test needs a hard open-file limit of at least 1,300 (has {hard})");
        // A low soft limit, as on many machines (1,024): 1,000 connections need it raised.
        rlimit::Resource::NOFILE.set(512, hard).unwrap();
        assert_eq!(ensure_open_files(1_000).unwrap(), 1_000 + SPARE_FILES);
        assert_eq!(nofile().0, 1_000 + SPARE_FILES);
        // Enough already: left as it is.
        assert_eq!(ensure_open_files(10).unwrap(), 1_000 + SPARE_FILES);
        // Beyond the hard limit: refused, saying what to change (an unlimited hard limit has no beyond).
        if hard != rlimit::INFINITY {
            let e = ensure_open_files(hard as usize).unwrap_err().to_string();
            assert!(e.contains("--concurrency") && e.contains("ulimit -Hn") && e.contains(&hard.to_string()), "{e}");
            assert_eq!(nofile().0, 1_000 + SPARE_FILES);
        }
    }
}
