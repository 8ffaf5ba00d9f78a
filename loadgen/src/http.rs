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
    let lim = open_file_limit().context("cannot read the open-file limit")?;
    if lim.rlim_cur >= need {
        return Ok(lim.rlim_cur);
    }
    if lim.rlim_max < need {
        anyhow::bail!(
            "{connections} connections (--concurrency × targets) need about {need} open files, but this shell allows at most {}: \
             raise the hard limit (`ulimit -Hn {need}` as root, or LimitNOFILE in a systemd unit) or lower --concurrency",
            lim.rlim_max
        );
    }
    let raised = libc::rlimit { rlim_cur: need, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads one rlimit we own; raising the soft limit up to the hard one is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        anyhow::bail!("cannot raise the open-file limit to {need} for {connections} connections: {}; run `ulimit -n {need}` first", std::io::Error::last_os_error());
    }
    Ok(need)
}

/// This process's open-file limit (soft and hard).
fn open_file_limit() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => Ok(lim),
        _ => Err(std::io::Error::last_os_error()),
    }
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

    fn nofile() -> libc::rlimit {
        open_file_limit().unwrap()
    }

    #[test]
    fn open_files_are_raised_for_the_connections_or_refused_with_what_to_do() {
        let hard = nofile().rlim_max;
        assert!(hard >= 1_300, "this test needs a hard open-file limit of at least 1,300 (has {hard})");
        // A low soft limit, as on many machines (1,024): 1,000 connections need it raised.
        let low = libc::rlimit { rlim_cur: 512, rlim_max: hard };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        assert_eq!(ensure_open_files(1_000).unwrap(), 1_000 + SPARE_FILES);
        assert_eq!(nofile().rlim_cur, 1_000 + SPARE_FILES);
        // Enough already: left as it is.
        assert_eq!(ensure_open_files(10).unwrap(), 1_000 + SPARE_FILES);
        // Beyond the hard limit: refused, saying what to change (an unlimited hard limit has no beyond).
        if hard != libc::RLIM_INFINITY {
            let e = ensure_open_files(hard as usize).unwrap_err().to_string();
            assert!(e.contains("--concurrency") && e.contains("ulimit -Hn") && e.contains(&hard.to_string()), "{e}");
            assert_eq!(nofile().rlim_cur, 1_000 + SPARE_FILES);
        }
    }
}
