//! StatsD metrics (cadence, DogStatsD tags) for Telegraf → InfluxDB → Grafana, and the
//! catalogue that is their single source of truth (the README table is checked against it).
//!
//! Emission never slows or blocks the node: counters are plain atomics the pipeline bumps,
//! sent as per-second deltas by a flusher thread; timers (sampled at `statsd.rate` on the
//! per-request paths) and gauges go through a bounded queue that drops, and counts the drops,
//! when full. The flusher packs lines into UDP datagrams, sends at least every
//! [`FLUSH_EVERY`], and drains the queue on clean shutdown. With no listener, or with
//! `statsd.rate = 0`, the node runs the same.

use crate::config::Statsd;
use cadence::prelude::*;
use cadence::{MetricSink, StatsdClient};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every metric name is prefixed with this (Telegraf turns `cairn.tx.accepted` into the
/// measurement `cairn_tx_accepted`).
pub const PREFIX: &str = "cairn";
/// How often counters are sent and the datagram buffer is flushed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Lines waiting to be sent before new ones are dropped.
pub const QUEUE: usize = 16_384;
/// How often the flusher takes queued lines: it polls rather than being woken per line
/// (wake-ups were ~2 % of a federation member's CPU under load, `perf`); at this period the
/// queue holds [`QUEUE`] lines for 327k lines/s, far above what the node emits.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Largest datagram sent (fits a 1500-byte MTU with IP/UDP headers).
const DATAGRAM: usize = 1_400;

pub use ledger::statsd::{Kind, Metric};

macro_rules! catalogue {
    ($($id:ident = $name:literal, $kind:ident, [$($tag:literal),*], $meaning:literal;)*) => {
        /// Metric names, for the emitting code.
        pub mod name { $(#[doc = $meaning] pub const $id: &str = $name;)* }
        /// Every metric the node emits.
        pub const CATALOGUE: &[Metric] = &[$(Metric { name: $name, kind: Kind::$kind, tags: &[$($tag),*], meaning: $meaning }),*];
    };
}

catalogue! {
    TX_RECEIVED = "tx.received", Counter, [], "transactions POSTed (bodies received)";
    TX_ACCEPTED = "tx.accepted", Counter, [], "transactions answered 202 (durable in the backlog)";
    TX_REJECTED = "tx.rejected", Counter, ["reason"], "transactions refused, by reason (BigchainDB error class, or Unavailable)";
    TX_COMMITTED = "tx.committed", Counter, [], "transactions applied in blocks decided VALID";
    TX_REQUEUED = "tx.requeued", Counter, [], "valid transactions of an INVALID block returned to the backlog";
    TX_VALIDATION_US = "tx.validation_us", Timer, [], "ingest validation of one transaction (parse, id, signatures, state), µs; sampled at statsd.rate";
    SIG_BATCH_US = "sig.batch_us", Timer, [], "one batch signature verification at ingest, µs";
    SIG_BATCH_SIZE = "sig.batch_size", Timer, [], "signatures in one ingest verification batch";
    ENGINE_PUBLISH_US = "engine.publish_us", Timer, [], "one group commit of accepted transactions into the engine's backlog, µs";
    BACKLOG_DEPTH = "backlog.depth", Gauge, ["partition"], "transactions in a backlog partition not yet in a block";
    BLOCK_BUILT = "block.built", Counter, [], "blocks this node built";
    BLOCK_SIZE_TXS = "block.size_txs", Timer, [], "transactions in each block this node built";
    VOTE_CAST = "vote.cast", Counter, ["valid"], "votes this node cast, by verdict";
    BLOCK_DECIDED = "block.decided", Counter, ["decision"], "blocks decided, valid or invalid";
    BLOCK_DECISION_US = "block.decision_us", Timer, [], "from this node reading a block to its decision being applied, µs";
    STATE_APPLIED_HEIGHT = "state.applied_height", Gauge, [], "blocks applied to local state";
    API_REQUEST_US = "api.request_us", Timer, ["route", "status"], "HTTP request handling time by route and status, µs; sampled at statsd.rate";
    WS_CLIENTS = "ws.clients", Gauge, [], "open websocket stream connections";
    PROCESS_CPU_US = "process.cpu_us", Counter, [], "CPU time (user + system, all threads) the node process used, µs";
    PROCESS_RSS_BYTES = "process.rss_bytes", Gauge, [], "resident memory of the node process, bytes";
    METRICS_DROPPED = "metrics.dropped", Counter, [], "metric lines dropped because the send queue was full";
}

/// The reasons `tx.rejected` is tagged with, in a fixed order (one atomic each).
pub const REJECT_REASONS: [&str; 11] = [
    "SchemaValidationError",
    "InvalidHash",
    "InvalidSignature",
    "DoubleSpend",
    "InputDoesNotExist",
    "AmountError",
    "AssetIdMismatch",
    "DuplicateTransaction",
    "ValidationError",
    "Unavailable",
    "Other",
];

/// Counters and levels the pipeline bumps; the flusher sends them (also shown on `GET /`).
#[derive(Default)]
pub struct Counters {
    /// Transactions POSTed.
    pub received: AtomicU64,
    /// Transactions answered 202.
    pub accepted: AtomicU64,
    /// Transactions answered 4xx/5xx.
    pub rejected: AtomicU64,
    /// Rejections by [`REJECT_REASONS`] index.
    pub rejected_by: [AtomicU64; REJECT_REASONS.len()],
    /// Transactions applied in VALID blocks.
    pub committed: AtomicU64,
    /// Transactions returned to the backlog.
    pub requeued: AtomicU64,
    /// Blocks this node created.
    pub blocks_built: AtomicU64,
    /// Votes cast: valid, invalid.
    pub votes: [AtomicU64; 2],
    /// Blocks decided: valid, invalid.
    pub decided: [AtomicU64; 2],
    /// Blocks applied to local state.
    pub applied_height: AtomicU64,
    /// Open websocket connections.
    pub ws_clients: AtomicU64,
}

impl Counters {
    /// Counts a rejection under `reason` (an error class; unknown ones count as Other).
    pub fn reject(&self, reason: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let i = REJECT_REASONS.iter().position(|r| *r == reason).unwrap_or(REJECT_REASONS.len() - 1);
        self.rejected_by[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The metrics pipeline of one node.
pub struct Metrics {
    client: Option<Arc<StatsdClient>>,
    rate: f64,
    sample_every: u64,
    sampled: AtomicU64,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The cadence sink: a non-blocking hand-off to the flusher thread.
struct QueueSink {
    q: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl MetricSink for QueueSink {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        match self.q.try_send(metric.to_string()) {
            Ok(()) => Ok(metric.len()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(0)
            }
        }
    }
}

impl Metrics {
    /// Metrics that go nowhere (statsd.rate = 0, or the StatsD host does not resolve).
    pub fn disabled() -> Self {
        Metrics {
            client: None,
            rate: 0.0,
            sample_every: u64::MAX,
            sampled: AtomicU64::new(0),
            dropped: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(true)),
            flusher: Mutex::new(None),
        }
    }

    /// Starts the flusher sending to `cfg.host:cfg.port`, every metric tagged with `node` (the
    /// short public key) and `role`. `counters` are read by the flusher every flush.
    pub fn start(cfg: &Statsd, node: &str, role: &str, counters: Arc<Counters>) -> Self {
        if cfg.rate <= 0.0 {
            return Self::disabled();
        }
        let target = match std::net::ToSocketAddrs::to_socket_addrs(&(cfg.host.as_str(), cfg.port)).map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => {
                tracing::warn!(host = %cfg.host, port = cfg.port, "StatsD host does not resolve; metrics are off (statsd.host)");
                return Self::disabled();
            }
        };
        let socket = match UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot open a UDP socket for StatsD ({e}); metrics are off");
                return Self::disabled();
            }
        };
        let (q, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let client = StatsdClient::builder(PREFIX, QueueSink { q, dropped: dropped.clone() })
            .with_tag("node", node.to_string())
            .with_tag("role", role.to_string())
            .with_error_handler(|e| tracing::debug!("metric not sent: {e}"))
            .build();
        let client = Arc::new(client);
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = {
            let (client, stop, dropped) = (client.clone(), stop.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || flush_loop(rx, socket, target, client, counters, dropped, stop))
                .ok()
        };
        Metrics {
            client: Some(client),
            rate: cfg.rate,
            sample_every: (1.0 / cfg.rate).round().max(1.0) as u64,
            sampled: AtomicU64::new(0),
            dropped,
            stop,
            flusher: Mutex::new(flusher),
        }
    }

    /// Whether anything is sent at all (`statsd.rate` > 0 and the host resolved).
    pub fn enabled(&self) -> bool {
        self.client.is_some()
    }

    /// Whether a per-request sample should be taken now (every 1/rate-th call); callers that
    /// must build tags first ask this, then call [`Metrics::send_sampled_time`].
    pub fn sample(&self) -> bool {
        self.client.is_some() && self.sampled.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.sample_every)
    }

    /// A per-request timing, sampled at `statsd.rate` (sent with `|@rate`).
    pub fn sampled_time(&self, name: &str, value: u64, tags: &[(&str, &str)]) {
        if self.sample() {
            self.send_sampled_time(name, value, tags);
        }
    }

    /// Sends a timing that [`Metrics::sample`] chose, marked with the sampling rate.
    pub fn send_sampled_time(&self, name: &str, value: u64, tags: &[(&str, &str)]) {
        if let Some(c) = &self.client {
            let mut b = c.time_with_tags(name, value).with_sampling_rate(self.rate);
            for (k, v) in tags {
                b = b.with_tag(k, v);
            }
            b.send();
        }
    }

    /// A timing that is not per-request (per batch, per block): always sent.
    pub fn time(&self, name: &str, value: u64) {
        if let Some(c) = &self.client {
            c.time_with_tags(name, value).send();
        }
    }

    /// A level.
    pub fn gauge(&self, name: &str, value: u64, tags: &[(&str, &str)]) {
        if let Some(c) = &self.client {
            let mut b = c.gauge_with_tags(name, value);
            for (k, v) in tags {
                b = b.with_tag(k, v);
            }
            b.send();
        }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends the last counter deltas, drains the queue and flushes (clean shutdown).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.flusher.lock().expect("flusher lock").take() {
            let _ = t.join();
        }
    }
}

/// Counter values last sent, to send deltas.
#[derive(Default)]
struct Sent {
    values: Vec<u64>,
}

impl Sent {
    fn delta(&mut self, i: usize, now: u64) -> u64 {
        if self.values.len() <= i {
            self.values.resize(i + 1, 0);
        }
        let d = now.saturating_sub(self.values[i]);
        self.values[i] = now;
        d
    }
}

fn send_counters(client: &StatsdClient, c: &Counters, dropped: &AtomicU64, sent: &mut Sent) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut i = 0;
    let mut count = |name: &str, v: u64, tags: &[(&str, &str)], sent: &mut Sent| {
        let d = sent.delta(i, v);
        i += 1;
        if d > 0 {
            let mut b = client.count_with_tags(name, d as i64);
            for (k, v) in tags {
                b = b.with_tag(k, v);
            }
            b.send();
        }
    };
    count(name::TX_RECEIVED, load(&c.received), &[], sent);
    count(name::TX_ACCEPTED, load(&c.accepted), &[], sent);
    for (r, a) in REJECT_REASONS.iter().zip(&c.rejected_by) {
        count(name::TX_REJECTED, load(a), &[("reason", r)], sent);
    }
    count(name::TX_COMMITTED, load(&c.committed), &[], sent);
    count(name::TX_REQUEUED, load(&c.requeued), &[], sent);
    count(name::BLOCK_BUILT, load(&c.blocks_built), &[], sent);
    count(name::VOTE_CAST, load(&c.votes[0]), &[("valid", "true")], sent);
    count(name::VOTE_CAST, load(&c.votes[1]), &[("valid", "false")], sent);
    count(name::BLOCK_DECIDED, load(&c.decided[0]), &[("decision", "valid")], sent);
    count(name::BLOCK_DECIDED, load(&c.decided[1]), &[("decision", "invalid")], sent);
    count(name::METRICS_DROPPED, load(dropped), &[], sent);
    client.gauge(name::STATE_APPLIED_HEIGHT, load(&c.applied_height)).ok();
    client.gauge(name::WS_CLIENTS, load(&c.ws_clients)).ok();
    if let Some((cpu_us, rss)) = process_usage() {
        count(name::PROCESS_CPU_US, cpu_us, &[], sent);
        client.gauge(name::PROCESS_RSS_BYTES, rss).ok();
    }
}

/// This process's CPU time (µs) and resident memory (bytes), from /proc (None elsewhere), so
/// dashboards show each node's own cost even when Telegraf runs on another host.
fn process_usage() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after "(comm) ": state is field 3, utime 14, stime 15, in USER_HZ (100/s on Linux).
    let rest: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((ticks * 10_000, rss_kb * 1024))
}

fn flush_loop(
    rx: Receiver<String>,
    socket: UdpSocket,
    target: std::net::SocketAddr,
    client: Arc<StatsdClient>,
    counters: Arc<Counters>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = String::with_capacity(DATAGRAM + 256);
    let mut sent = Sent::default();
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    let send = |buf: &mut String| {
        if !buf.is_empty() {
            // No listener is fine: the error (ECONNREFUSED from an earlier datagram) is ignored.
            let _ = socket.send_to(buf.as_bytes(), target);
            buf.clear();
        }
    };
    let push = |buf: &mut String, line: String| {
        if !buf.is_empty() && buf.len() + 1 + line.len() > DATAGRAM {
            send(buf);
        }
        if !buf.is_empty() {
            buf.push('\n');
        }
        buf.push_str(&line);
    };
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping || Instant::now() >= next_flush {
            send_counters(&client, &counters, &dropped, &mut sent);
            while let Ok(line) = rx.try_recv() {
                push(&mut buf, line);
            }
            send(&mut buf);
            next_flush = Instant::now() + FLUSH_EVERY;
            if stopping {
                return;
            }
        }
        // Sleep, then take what queued meanwhile: a blocking receive would make every sender
        // wake this thread (a futex call and a context switch per line).
        std::thread::sleep(DRAIN_EVERY.min(next_flush.saturating_duration_since(Instant::now())));
        loop {
            match rx.try_recv() {
                Ok(line) => push(&mut buf, line),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    send(&mut buf);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_are_unique_and_carry_units() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for m in CATALOGUE {
            if m.kind == Kind::Timer {
                assert!(m.name.ends_with("_us") || m.name.ends_with("_txs") || m.name.ends_with("_size"), "{}: timers name their unit", m.name);
            }
        }
    }
}
