//! loadgen's StatsD metrics (`--statsd host:port`): the load side of a test (offered, sent,
//! accepted, rejected, committed per second; accept and commit latency), tagged with the
//! run id, so the *Load test* dashboard draws them beside the nodes' own metrics.
//!
//! The workers only bump atomics and push latency samples; one reporter sends once a second
//! (counters as deltas, latency samples thinned to at most [`SAMPLES_PER_TICK`] with an exact
//! `|@rate`), so a slow or absent StatsD listener never slows the load.

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, StatsdClient};
use std::collections::BTreeMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Every name is prefixed with this (Telegraf writes `loadgen.tx.sent` as `loadgen_tx_sent`).
pub const PREFIX: &str = "loadgen";
/// Latency samples sent per metric per report; more are thinned to every k-th, sent `|@1/k`.
pub const SAMPLES_PER_TICK: usize = 1_000;

pub use ledger::statsd::{Kind, Metric};

/// Every metric loadgen emits: the single source of truth for the dashboards and the README.
pub const CATALOGUE: &[Metric] = &[
    Metric { name: "tx.offered", kind: Kind::Counter, tags: &[], meaning: "transactions whose scheduled send time has come (open loop), or sent (--rate 0)" },
    Metric { name: "tx.sent", kind: Kind::Counter, tags: &[], meaning: "POSTs started" },
    Metric { name: "tx.accepted", kind: Kind::Counter, tags: &[], meaning: "POSTs answered 202" },
    Metric { name: "tx.rejected", kind: Kind::Counter, tags: &["reason"], meaning: "POSTs refused, by HTTP status (or `transport` when no answer came)" },
    Metric { name: "tx.committed", kind: Kind::Counter, tags: &[], meaning: "this run's transactions seen VALID on the commit stream" },
    Metric { name: "tx.in_flight", kind: Kind::Gauge, tags: &[], meaning: "POSTs sent and not yet answered" },
    Metric { name: "accept_latency_us", kind: Kind::Timer, tags: &[], meaning: "scheduled send time → 202, µs" },
    Metric { name: "commit_latency_us", kind: Kind::Timer, tags: &[], meaning: "scheduled send time → VALID on the stream, µs" },
];

/// What the workers and the commit follower count while the load runs.
#[derive(Default)]
pub struct Live {
    /// Transactions due by now on the schedule.
    pub offered: AtomicU64,
    /// POSTs started.
    pub sent: AtomicU64,
    /// POSTs answered 202.
    pub accepted: AtomicU64,
    /// POSTs refused or failed.
    pub rejected: AtomicU64,
    /// This run's transactions committed.
    pub committed: AtomicU64,
    rejected_by: Mutex<BTreeMap<String, u64>>,
    /// Whether latency samples are kept for a reporter (off without --statsd: no per-tx lock).
    sampling: bool,
    accept_us: Mutex<Vec<u64>>,
    commit_us: Mutex<Vec<u64>>,
}

impl Live {
    /// Counters, and latency samples too when `sampling` (a reporter will drain them).
    pub fn new(sampling: bool) -> Self {
        Live { sampling, ..Default::default() }
    }

    /// Counts a refusal under `reason` (an HTTP status, or `transport`).
    pub fn reject(&self, reason: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        *self.rejected_by.lock().expect("lock").entry(reason.to_string()).or_default() += 1;
    }

    /// Records one 202 and its latency.
    pub fn accept(&self, latency_us: u64) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if self.sampling {
            self.accept_us.lock().expect("lock").push(latency_us);
        }
    }

    /// Records one commit of ours and its latency.
    pub fn commit(&self, latency_us: u64) {
        self.committed.fetch_add(1, Ordering::Relaxed);
        if self.sampling {
            self.commit_us.lock().expect("lock").push(latency_us);
        }
    }
}

/// Sends [`Live`] once per call to [`Reporter::report`].
pub struct Reporter {
    client: StatsdClient,
    last: BTreeMap<String, u64>,
}

impl Reporter {
    /// A reporter sending to `target` (`host:port`), every metric tagged `run:<run>`.
    pub fn new(target: &str, run: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let addr = target
            .to_socket_addrs()
            .with_context(|| format!("--statsd {target}: not a host:port that resolves (e.g. 127.0.0.1:8125)"))?
            .next()
            .with_context(|| format!("--statsd {target}: resolves to no address"))?;
        let socket = UdpSocket::bind(if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).context("opening a UDP socket for StatsD")?;
        // 1,400 bytes: one datagram fits a 1,500-byte MTU with IP and UDP headers.
        let sink = BufferedUdpMetricSink::with_capacity(addr, socket, 1_400).context("StatsD sink")?;
        let client = StatsdClient::builder(PREFIX, sink).with_tag("run", run.to_string()).with_error_handler(|_| {}).build();
        Ok(Reporter { client, last: BTreeMap::new() })
    }

    fn delta(&mut self, key: &str, now: u64) -> u64 {
        let last = self.last.entry(key.to_string()).or_default();
        let d = now.saturating_sub(*last);
        *last = now;
        d
    }

    fn count(&mut self, name: &str, now: u64, tag: Option<(&str, &str)>) {
        let key = match tag {
            Some((_, v)) => format!("{name}#{v}"),
            None => name.to_string(),
        };
        let d = self.delta(&key, now);
        if d > 0 {
            let mut b = self.client.count_with_tags(name, d as i64);
            if let Some((k, v)) = tag {
                b = b.with_tag(k, v);
            }
            b.send();
        }
    }

    fn samples(&self, name: &str, samples: Vec<u64>) {
        let every = samples.len().div_ceil(SAMPLES_PER_TICK).max(1);
        for v in samples.into_iter().step_by(every) {
            let b = self.client.time_with_tags(name, v);
            if every > 1 {
                b.with_sampling_rate(1.0 / every as f64).send();
            } else {
                b.send();
            }
        }
    }

    /// Sends what changed since the last report; `offered` is the running total of
    /// transactions due by now.
    pub fn report(&mut self, live: &Live, offered: u64) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (sent, accepted, rejected) = (load(&live.sent), load(&live.accepted), load(&live.rejected));
        self.count("tx.offered", offered, None);
        self.count("tx.sent", sent, None);
        self.count("tx.accepted", accepted, None);
        self.count("tx.committed", load(&live.committed), None);
        let reasons = live.rejected_by.lock().expect("lock").clone();
        for (reason, n) in &reasons {
            self.count("tx.rejected", *n, Some(("reason", reason)));
        }
        self.client.gauge("tx.in_flight", sent.saturating_sub(accepted + rejected)).ok();
        let accept = std::mem::take(&mut *live.accept_us.lock().expect("lock"));
        let commit = std::mem::take(&mut *live.commit_us.lock().expect("lock"));
        self.samples("accept_latency_us", accept);
        self.samples("commit_latency_us", commit);
        self.client.flush().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a listener receives from one report: deltas, the run tag, thinned samples with an
    /// exact rate, and nothing again when nothing changed.
    #[test]
    fn a_report_sends_deltas_and_thinned_samples() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
        let mut r = Reporter::new(&sock.local_addr().unwrap().to_string(), "r1").unwrap();
        let live = Live::new(true);
        live.sent.store(2_500, Ordering::Relaxed);
        for i in 0..2_500 {
            live.accept(i);
        }
        live.reject("503");
        live.commit(7);
        r.report(&live, 3_000);
        let mut lines = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            assert!(n <= 1_400);
            lines.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
        assert!(lines.contains(&"loadgen.tx.offered:3000|c|#run:r1".to_string()), "{lines:?}");
        assert!(lines.contains(&"loadgen.tx.rejected:1|c|#run:r1,reason:503".to_string()), "{lines:?}");
        assert!(lines.contains(&"loadgen.tx.in_flight:0|g|#run:r1".to_string()), "{lines:?}");
        let accepts: Vec<_> = lines.iter().filter(|l| l.starts_with("loadgen.accept_latency_us:")).collect();
        assert_eq!(accepts.len(), 834, "2,500 samples thinned to every 3rd");
        assert!(accepts.iter().all(|l| l.ends_with("|ms|@0.3333333333333333|#run:r1")), "{:?}", accepts[0]);
        assert!(lines.contains(&"loadgen.commit_latency_us:7|ms|#run:r1".to_string()));
        r.report(&live, 3_000);
        let mut again = Vec::new();
        while let Ok(n) = sock.recv(&mut buf) {
            again.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
        assert_eq!(again, vec!["loadgen.tx.in_flight:0|g|#run:r1".to_string()], "only the level is repeated");
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    /// monitor/README.md's loadgen table lists the catalogue in order (name, type).
    #[test]
    fn readme_table_is_the_catalogue() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor/README.md")).unwrap();
        assert_eq!(ledger::statsd::table_rows(&readme, PREFIX), ledger::statsd::catalogue_rows(CATALOGUE));
    }
}
