//! One measured run at one offered rate: setup (untimed), then the open-loop schedule, then
//! draining commits. Every transaction has a slot recording when it was scheduled, sent,
//! answered and committed (µs since the start), so counts, per-second series and latencies
//! are computed from the same per-transaction events, and latency runs from the scheduled
//! send time (no coordinated omission). The outcome says, rather than hides, when the
//! generator fell behind its schedule, saturated its CPU, or nothing committed for 30 s.

use crate::http::{reason, HttpClient};
use crate::metrics::Live;
use crate::progress::Progress;
use crate::workload::{Kind, Plan};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where to send and where to watch commits.
#[derive(Debug, Clone)]
pub struct Targets {
    /// API base URLs, one per node (transactions are spread over them).
    pub api: Vec<String>,
    /// Websocket stream of the node whose commits are timed (every node applies every block).
    pub ws: String,
}

/// How to send.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Offered tx/s (open loop); 0 = as fast as the connections allow.
    pub rate: f64,
    /// Workers per target, each with its own connection and one request in flight: a node
    /// sees this many requests at once, whatever the number of targets.
    pub concurrency: usize,
    /// POST mode (`async` or `sync`).
    pub mode: String,
    /// How long to wait for commits after the last answer.
    pub commit_timeout: Duration,
    /// Stop when nothing commits for this long while transactions wait.
    pub stall: Duration,
    /// The schedule-lag p99 past which the generator counts as behind.
    pub max_lag: Duration,
}

/// Per-transaction timestamps (µs since start + 1; 0 = has not happened).
#[derive(Default)]
struct Slot {
    picked: AtomicU64,
    sent: AtomicU64,
    answered: AtomicU64,
    status: AtomicU32,
    committed: AtomicU64,
}

/// One transaction's events (µs since the run's start), as written to events.csv.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Transaction id.
    pub id: String,
    /// create, transfer or conflict.
    pub kind: &'static str,
    /// Index of the target it was posted to.
    pub route: usize,
    /// When it should have been sent.
    pub scheduled_us: u64,
    /// When a connection was free for it (and, for a chain link, the link it spends committed):
    /// later than scheduled means the target held every connection (backpressure).
    pub picked_us: Option<u64>,
    /// When it was sent (None: never).
    pub sent_us: Option<u64>,
    /// When the node answered (None: no answer).
    pub answered_us: Option<u64>,
    /// HTTP status (0: transport error or not sent).
    pub status: u16,
    /// When the commit stream reported it VALID.
    pub committed_us: Option<u64>,
}

/// One second of a run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Scheduled in this second.
    pub offered: u64,
    /// Sent in this second.
    pub sent: u64,
    /// Accepted (202) in this second.
    pub accepted: u64,
    /// Refused in this second.
    pub rejected: u64,
    /// Committed in this second.
    pub committed: u64,
    /// Commit latency percentiles (ms) of the transactions committed in this second.
    pub commit_p50_ms: f64,
    /// 99th percentile.
    pub commit_p99_ms: f64,
    /// Accept latency p99 (ms) of the answers in this second.
    pub accept_p99_ms: f64,
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Summarises a µs histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        let q = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
        Latency { count: h.len(), p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 } }
    }
}

/// The counts of a run, kept apart: offered = accepted + rejected + lost.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq)]
pub struct Counts {
    /// Scheduled before the run ended.
    pub offered: u64,
    /// Sent (an HTTP request went out).
    pub sent: u64,
    /// Answered 202.
    pub accepted: u64,
    /// Answered anything else, or not sent because the chain link it spends failed.
    pub rejected: u64,
    /// Neither accepted nor rejected: no answer (transport error) or never sent.
    pub lost: u64,
    /// Accepted and reported VALID by the commit stream.
    pub committed: u64,
    /// Double-spend pair sides that did not commit because their twin did (expected).
    pub conflict_losers: u64,
    /// Accepted, not a conflict loser, not committed by the end.
    pub uncommitted: u64,
    /// Double-spend pairs offered.
    pub pairs: u64,
    /// Pairs with both sides committed (must stay 0).
    pub pairs_both_committed: u64,
}

/// Everything one run measured.
pub struct Outcome {
    /// The counts.
    pub counts: Counts,
    /// Refusals by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Accept latency (µs), merged from every worker's histogram.
    pub accept: Histogram<u64>,
    /// Commit latency (µs) from the scheduled send time.
    pub commit: Histogram<u64>,
    /// Generator lag (µs): sent − max(scheduled, picked); loadgen's own lateness.
    pub lag: Histogram<u64>,
    /// Connection wait (µs): picked − scheduled; the target holding every connection.
    pub wait: Histogram<u64>,
    /// Offered rate (tx/s; the achieved send rate for `--rate 0`).
    pub offered_rate: f64,
    /// Accepted / time of the last answer.
    pub accepted_tps: f64,
    /// Committed / time of the last commit.
    pub committed_tps: f64,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Generator CPU over the run, as a share of all cores.
    pub generator_cpu: f64,
    /// Why this run is not to be trusted (empty: it is).
    pub invalid: Vec<String>,
    /// Set when the run stopped because nothing committed.
    pub stalled: Option<String>,
    /// Per-transaction events.
    pub events: Vec<Event>,
    /// Per-second series.
    pub seconds: Vec<Second>,
    /// When the run started (for fault windows).
    pub started: Instant,
}

/// The process's CPU seconds so far (user + system).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Follows a node's websocket stream, calling `on_commit(id, µs)` for each VALID transaction;
/// reconnects after a drop until `stop` is set.
fn follow(ws: String, start: Instant, stop: Arc<AtomicBool>, on_commit: impl Fn(&str, u64) + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Ok((conn, _))) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(&ws)).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let (_, mut read) = conn.split();
            loop {
                let next = tokio::time::timeout(Duration::from_millis(250), read.next()).await;
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let msg = match next {
                    Err(_) => continue,
                    Ok(Some(Ok(m))) => m,
                    Ok(_) => break,
                };
                let Ok(text) = msg.into_text() else { continue };
                // Cheap extraction: the id is the only field loadgen needs.
                if let Some(pos) = text.find("\"transaction_id\"") {
                    let rest = &text[pos + 16..];
                    if let Some(q) = rest.find('"') {
                        let id = &rest[q + 1..];
                        if let Some(end) = id.find('"') {
                            on_commit(&id[..end], start.elapsed().as_micros() as u64 + 1);
                        }
                    }
                }
            }
        }
    })
}

/// Opens the commit stream before anything is sent (its connection must be up, or commits
/// would be missed): fails with a clear message when it cannot.
async fn check_stream(ws: &str) -> Result<()> {
    let (c, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(ws))
        .await
        .with_context(|| format!("the websocket stream {ws} did not answer within 10 s"))?
        .with_context(|| format!("cannot open the websocket stream {ws}"))?;
    drop(c);
    Ok(())
}

impl Targets {
    /// Each target's `POST /api/v1/transactions?mode=MODE` URL, in target order.
    fn post_urls(&self, mode: &str) -> Result<Vec<hyper::Uri>> {
        self.api.iter().map(|a| Ok(format!("{a}/api/v1/transactions?mode={mode}").parse()?)).collect()
    }
}

async fn post(client: &HttpClient, url: &hyper::Uri, body: Bytes) -> std::result::Result<(u16, Bytes), String> {
    let req = hyper::Request::post(url.clone()).header("content-type", "application/json").body(Full::new(body)).expect("request");
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok((status, body))
        }
        Err(e) => Err(format!("transport: {e}")),
    }
}

/// One worker's own keep-alive connection per target (no shared pool on the hot path: a pool
/// checkout per request cost loadgen half its ceiling against wrk).
struct Conns {
    senders: Vec<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
}

impl Conns {
    fn new(n: usize) -> Self {
        Conns { senders: (0..n).map(|_| None).collect() }
    }

    async fn post(&mut self, route: usize, url: &hyper::Uri, body: Bytes) -> std::result::Result<(u16, Bytes), String> {
        let authority = url.authority().map(|a| a.to_string()).unwrap_or_default();
        if self.senders[route].as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("transport: connecting to {authority}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|e| format!("transport: {e}"))?;
            tokio::spawn(conn);
            self.senders[route] = Some(sender);
        }
        let sender = self.senders[route].as_mut().expect("connected");
        let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = hyper::Request::post(path).header("host", &authority).header("content-type", "application/json").body(Full::new(body)).expect("request");
        let answer = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        answer.map_err(|e| {
            self.senders[route] = None;
            format!("transport: {e}")
        })
    }
}

/// Posts the setup CREATEs and waits until every one is committed (untimed). They are spread
/// over the targets in turn, about `concurrency` in flight per target (`concurrency` × targets
/// in all), so a large federation's setup is not limited to what its first node ingests.
pub async fn setup(client: &HttpClient, targets: &Targets, txs: &[(String, Bytes)], concurrency: usize, timeout: Duration, progress: &Progress) -> Result<()> {
    if txs.is_empty() {
        return Ok(());
    }
    check_stream(&targets.ws).await?;
    let ids: Arc<HashMap<String, ()>> = Arc::new(txs.iter().map(|(id, _)| (id.clone(), ())).collect());
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (ids, seen) = (ids.clone(), seen.clone());
        follow(targets.ws.clone(), Instant::now(), stop.clone(), move |id, _| {
            if ids.contains_key(id) {
                seen.lock().expect("lock").insert(id.to_string());
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let urls = targets.post_urls("async")?;
    let bar = progress.bar("setup: spendable outputs", txs.len() as u64);
    let results: Vec<_> = futures_util::stream::iter(txs.iter().cloned().enumerate())
        .map(|(i, (_, body))| {
            let (client, url) = (client.clone(), urls[i % urls.len()].clone());
            async move { post(&client, &url, body).await }
        })
        .buffer_unordered(concurrency * urls.len())
        .collect()
        .await;
    for r in results {
        match r {
            Ok((202, _)) => {}
            Ok((s, b)) => bail!("a setup CREATE was refused ({}); the target is not a fresh Cairn node?", reason(s, &b)),
            Err(e) => bail!("a setup CREATE was not answered: {e}"),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let n = seen.lock().expect("lock").len();
        bar.set(n as u64, "");
        if n >= txs.len() {
            break;
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            bail!("only {n} of {} setup CREATEs committed within {} s: the federation is not committing (check its logs)", txs.len(), timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish("committed");
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    Ok(())
}

/// Which targets are down (a fault is on them): workers route around them, as a client would.
pub type Down = Arc<Vec<AtomicBool>>;

/// Runs the timed list of `plan` against `targets`. `down` marks nodes a fault schedule has
/// taken out; `live` feeds the StatsD reporter and progress.
pub async fn run(targets: &Targets, plan: &Plan, s: &Settings, live: Arc<Live>, down: Down, progress: &Progress, label: &str) -> Result<Outcome> {
    let n = plan.timed.len();
    if n == 0 || s.concurrency == 0 {
        bail!("nothing to send: --count (or the rate times the duration) and --concurrency must be at least 1");
    }
    // No stream: acceptance only (a bare HTTP endpoint, loadgen's own ceiling).
    let accept_only = targets.ws.is_empty();
    if !accept_only {
        check_stream(&targets.ws).await?;
    }
    let slots: Arc<Vec<Slot>> = Arc::new((0..n).map(|_| Slot::default()).collect());
    let index: Arc<HashMap<String, usize>> = Arc::new(plan.timed.iter().enumerate().map(|(i, t)| (t.id.clone(), i)).collect());
    let interval = (s.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / s.rate));
    let stop = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    // The schedule starts 100 ms after `start`, once the commit stream is up.
    let offset_us = 100_000u64;
    let t0 = start + Duration::from_micros(offset_us);
    let scheduled_us = move |i: usize| interval.map(|iv| (iv.as_secs_f64() * 1e6 * i as f64) as u64 + offset_us);

    let watcher = (!accept_only).then(|| {
        let (slots, index, live) = (slots.clone(), index.clone(), live.clone());
        follow(targets.ws.clone(), start, stop.clone(), move |id, us| {
            if let Some(&i) = index.get(id) {
                if slots[i].committed.compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    let from = scheduled_us(i).unwrap_or_else(|| slots[i].sent.load(Ordering::Relaxed).saturating_sub(1));
                    live.commit(us.saturating_sub(1).saturating_sub(from));
                }
            }
        })
    });
    tokio::time::sleep_until(t0.into()).await;

    let urls = Arc::new(targets.post_urls(&s.mode)?);
    let bodies: Arc<Vec<(Bytes, Option<usize>)>> = Arc::new(plan.timed.iter().map(|t| (t.body.clone(), t.after)).collect());
    // Each target has its own workers, taking that target's transactions in schedule order: a
    // node sees `concurrency` requests in flight whatever the federation's size (with one
    // shared pool, 64 workers over 4 nodes left each node 16, and its group commits small).
    let routes = urls.len();
    let mut queues: Vec<Vec<usize>> = vec![Vec::with_capacity(n / routes + 1); routes];
    plan.timed.iter().enumerate().for_each(|(i, t)| queues[t.route % routes].push(i));
    let queues = Arc::new(queues);
    let nexts: Arc<Vec<AtomicU64>> = Arc::new((0..routes).map(|_| AtomicU64::new(0)).collect());
    let reasons: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut workers = Vec::with_capacity(s.concurrency * routes);
    for home in (0..routes).flat_map(|r| std::iter::repeat_n(r, s.concurrency)) {
        let (urls, bodies, queues, nexts, slots, live, reasons, down, abort) =
            (urls.clone(), bodies.clone(), queues.clone(), nexts.clone(), slots.clone(), live.clone(), reasons.clone(), down.clone(), abort.clone());
        let commit_timeout = s.commit_timeout;
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
            let mut conns = Conns::new(urls.len());
            loop {
                let k = nexts[home].fetch_add(1, Ordering::Relaxed) as usize;
                if k >= queues[home].len() || abort.load(Ordering::Relaxed) {
                    break;
                }
                let i = queues[home][k];
                slots[i].picked.store(start.elapsed().as_micros() as u64 + 1, Ordering::Relaxed);
                let due = scheduled_us(i);
                if let Some(us) = due {
                    tokio::time::sleep_until((start + Duration::from_micros(us)).into()).await;
                }
                live.offered.fetch_add(1, Ordering::Relaxed);
                let (body, after) = &bodies[i];
                if let Some(a) = after {
                    // A chain link is sent once the link it spends is committed; if that one failed, neither can this.
                    let give_up = Instant::now() + commit_timeout;
                    loop {
                        if slots[*a].committed.load(Ordering::Relaxed) != 0 {
                            break;
                        }
                        let st = slots[*a].status.load(Ordering::Relaxed);
                        if (st != 0 && st != 202) || Instant::now() > give_up || abort.load(Ordering::Relaxed) {
                            *reasons.lock().expect("lock").entry("skipped: the chain link it spends did not commit".into()).or_default() += 1;
                            slots[i].status.store(1, Ordering::Relaxed);
                            slots[i].answered.store(start.elapsed().as_micros() as u64 + 1, Ordering::Relaxed);
                            live.reject("skipped");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    if slots[i].status.load(Ordering::Relaxed) == 1 {
                        continue;
                    }
                    slots[i].picked.fetch_max(start.elapsed().as_micros() as u64 + 1, Ordering::Relaxed);
                }
                let sent = start.elapsed().as_micros() as u64;
                let from = due.unwrap_or(sent);
                slots[i].sent.store(sent + 1, Ordering::Relaxed);
                live.sent.fetch_add(1, Ordering::Relaxed);
                // A node that is down (fault schedule) sends its workers to the next one up.
                let mut route = home;
                for _ in 0..urls.len() {
                    if !down[route].load(Ordering::Relaxed) {
                        break;
                    }
                    route = (route + 1) % urls.len();
                }
                let answer = conns.post(route, &urls[route], body.clone()).await;
                let now = start.elapsed().as_micros() as u64;
                match answer {
                    Ok((202, _)) => {
                        let us = now.saturating_sub(from);
                        hist.saturating_record(us.max(1));
                        live.accept(us);
                        slots[i].status.store(202, Ordering::Relaxed);
                        slots[i].answered.store(now + 1, Ordering::Relaxed);
                    }
                    Ok((status, b)) => {
                        *reasons.lock().expect("lock").entry(reason(status, &b)).or_default() += 1;
                        live.reject(&status.to_string());
                        slots[i].status.store(status as u32, Ordering::Relaxed);
                        slots[i].answered.store(now + 1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *reasons.lock().expect("lock").entry(e.chars().take(80).collect()).or_default() += 1;
                        live.reject("transport");
                    }
                }
            }
            hist
        }));
    }

    // Progress and stall watch, once a second, while sending and draining.
    let offered_by = move |now: Instant| match interval {
        Some(iv) => ((now.saturating_duration_since(t0).as_secs_f64() / iv.as_secs_f64()) as u64 + 1).min(n as u64),
        None => n as u64,
    };
    let bar = progress.bar(label, n as u64);
    let mut accept = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut last_commits = (0u64, Instant::now());
    let mut stalled = None;
    let mut sending = true;
    let mut drain_deadline = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if sending && workers.iter().all(|w| w.is_finished()) {
            sending = false;
            drain_deadline = Some(Instant::now() + s.commit_timeout);
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (acc, com) = (load(&live.accepted), load(&live.committed));
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        bar.set(load(&live.sent), &format!("accepted {acc} ({:.0}/s)  committed {com} ({:.0}/s)  rejected {}", acc as f64 / secs, com as f64 / secs, load(&live.rejected)));
        if com > last_commits.0 {
            last_commits = (com, Instant::now());
        } else if !accept_only && acc > com && last_commits.1.elapsed() > s.stall {
            let waiting = slots
                .iter()
                .zip(&plan.timed)
                .filter(|(sl, t)| {
                    sl.status.load(Ordering::Relaxed) == 202
                        && sl.committed.load(Ordering::Relaxed) == 0
                        && t.twin.is_none_or(|w| slots[w].committed.load(Ordering::Relaxed) == 0)
                })
                .count();
            stalled = Some(format!(
                "nothing committed for {} s while {waiting} accepted transactions wait: the federation stopped committing (check its nodes' logs)",
                s.stall.as_secs(),
            ));
            abort.store(true, Ordering::Relaxed);
            break;
        }
        if !sending && accept_only {
            break;
        }
        if !sending {
            let pending = acc.saturating_sub(com);
            if pending == 0 || drain_deadline.is_some_and(|d| Instant::now() > d) {
                // Conflict losers never commit: stop once only they can be outstanding.
                break;
            }
            if pending > 0 && settled(&slots, plan) {
                break;
            }
        }
    }
    for w in workers {
        accept.add(&w.await?)?;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let end = Instant::now();
    bar.finish(&format!("{} committed", live.committed.load(Ordering::Relaxed)));
    let wall = end.duration_since(start).as_secs_f64();
    let generator_cpu = (cpu_seconds() - cpu0) / wall / std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1) as f64;
    let offered = if stalled.is_some() { offered_by(end) } else { n as u64 };

    let events: Vec<Event> = plan
        .timed
        .iter()
        .zip(slots.iter())
        .enumerate()
        .map(|(i, (t, sl))| {
            let opt = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v != 0).map(|v| v - 1);
            let sent = opt(&sl.sent);
            Event {
                id: t.id.clone(),
                kind: t.kind.as_str(),
                route: t.route % targets.api.len(),
                scheduled_us: scheduled_us(i).or(sent).unwrap_or(0),
                picked_us: opt(&sl.picked),
                sent_us: sent,
                answered_us: opt(&sl.answered),
                status: sl.status.load(Ordering::Relaxed) as u16,
                committed_us: opt(&sl.committed),
            }
        })
        .collect();
    let reasons = reasons.lock().expect("lock").clone();
    Ok(summarise(plan, events, accept, reasons, s, offered, wall, generator_cpu, stalled, start))
}

/// True when every accepted transaction not yet committed is a pair side whose twin committed.
fn settled(slots: &[Slot], plan: &Plan) -> bool {
    slots.iter().zip(&plan.timed).all(|(s, t)| {
        s.status.load(Ordering::Relaxed) != 202
            || s.committed.load(Ordering::Relaxed) != 0
            || t.twin.is_some_and(|w| slots[w].committed.load(Ordering::Relaxed) != 0)
    })
}

/// Computes counts, histograms, the per-second series and validity from the events.
#[allow(clippy::too_many_arguments)]
pub fn summarise(
    plan: &Plan,
    events: Vec<Event>,
    accept: Histogram<u64>,
    reasons: BTreeMap<String, u64>,
    s: &Settings,
    offered: u64,
    wall: f64,
    generator_cpu: f64,
    stalled: Option<String>,
    started: Instant,
) -> Outcome {
    let mut c = Counts { offered, ..Default::default() };
    let mut commit = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    let mut lag = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    let mut wait = lag.clone();
    let mut last_answer = 0u64;
    let mut last_commit = 0u64;
    let mut first_sent = u64::MAX;
    let mut last_sent = 0u64;
    for (i, e) in events.iter().enumerate() {
        let t = &plan.timed[i];
        if let Some(sent) = e.sent_us {
            c.sent += 1;
            let ready = e.scheduled_us.max(e.picked_us.unwrap_or(0));
            lag.saturating_record(sent.saturating_sub(ready).max(1));
            wait.saturating_record(e.picked_us.unwrap_or(0).saturating_sub(e.scheduled_us).max(1));
            first_sent = first_sent.min(sent);
            last_sent = last_sent.max(sent);
        }
        match e.status {
            202 => {
                c.accepted += 1;
                last_answer = last_answer.max(e.answered_us.unwrap_or(0));
                if let Some(at) = e.committed_us {
                    c.committed += 1;
                    last_commit = last_commit.max(at);
                    commit.saturating_record(at.saturating_sub(e.scheduled_us).max(1));
                }
            }
            0 => {}
            _ => c.rejected += 1,
        }
        if t.kind == Kind::Conflict {
            let twin_committed = t.twin.is_some_and(|w| events[w].committed_us.is_some());
            if e.committed_us.is_none() && twin_committed {
                c.conflict_losers += 1;
            }
            if t.twin.is_some_and(|w| w > i) {
                c.pairs += 1;
                if e.committed_us.is_some() && twin_committed {
                    c.pairs_both_committed += 1;
                }
            }
        }
        if e.status == 202 && e.committed_us.is_none() && !(t.kind == Kind::Conflict && t.twin.is_some_and(|w| events[w].committed_us.is_some())) {
            c.uncommitted += 1;
        }
    }
    c.lost = c.offered.saturating_sub(c.accepted + c.rejected);
    let secs = |us: u64| (us as f64 / 1e6).max(1e-6);
    let offered_rate = if s.rate > 0.0 { s.rate } else if last_sent > first_sent { c.sent as f64 / secs(last_sent - first_sent) } else { 0.0 };

    // Per-second series.
    let horizon = events.iter().flat_map(|e| [Some(e.scheduled_us), e.answered_us, e.committed_us]).flatten().max().unwrap_or(0) / 1_000_000 + 1;
    let mut seconds: Vec<Second> = (0..horizon)
        .map(|t| Second { t, offered: 0, sent: 0, accepted: 0, rejected: 0, committed: 0, commit_p50_ms: 0.0, commit_p99_ms: 0.0, accept_p99_ms: 0.0 })
        .collect();
    let mut commit_h: Vec<Histogram<u64>> = (0..horizon).map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("histogram")).collect();
    let mut accept_h = commit_h.clone();
    let sec = |us: u64| (us / 1_000_000) as usize;
    for e in &events {
        seconds[sec(e.scheduled_us)].offered += 1;
        if let Some(t) = e.sent_us {
            seconds[sec(t)].sent += 1;
        }
        if let Some(t) = e.answered_us {
            if e.status == 202 {
                seconds[sec(t)].accepted += 1;
                accept_h[sec(t)].saturating_record(t.saturating_sub(e.scheduled_us).max(1));
            } else {
                seconds[sec(t)].rejected += 1;
            }
        }
        if let (Some(t), 202) = (e.committed_us, e.status) {
            seconds[sec(t)].committed += 1;
            commit_h[sec(t)].saturating_record(t.saturating_sub(e.scheduled_us).max(1));
        }
    }
    for (i, s) in seconds.iter_mut().enumerate() {
        let l = Latency::of(&commit_h[i]);
        s.commit_p50_ms = l.p50;
        s.commit_p99_ms = l.p99;
        s.accept_p99_ms = Latency::of(&accept_h[i]).p99;
    }

    let mut invalid = Vec::new();
    let lag99 = Latency::of(&lag).p99;
    if s.rate > 0.0 && lag99 > s.max_lag.as_secs_f64() * 1000.0 {
        invalid.push(format!(
            "the generator fell behind its schedule (its own send lag p99 {lag99:.0} ms > {} ms, with a connection free): loadgen lacked CPU; run it on another machine or offer less",
            s.max_lag.as_millis(),
        ));
    }
    if generator_cpu > 0.9 {
        invalid.push(format!("the generator used {:.0} % of this machine's CPU: it measured itself; run loadgen on another machine", generator_cpu * 100.0));
    }
    if let Some(m) = &stalled {
        invalid.push(m.clone());
    }
    let accepted_tps = if last_answer > 0 { c.accepted as f64 / secs(last_answer) } else { 0.0 };
    let committed_tps = if last_commit > 0 { c.committed as f64 / secs(last_commit) } else { 0.0 };
    Outcome {
        counts: c,
        reasons,
        accept,
        commit,
        lag,
        wait,
        offered_rate,
        accepted_tps,
        committed_tps,
        duration_s: wall,
        generator_cpu,
        invalid,
        stalled,
        events,
        seconds,
        started,
    }
}

/// Writes the per-transaction events as CSV (recompute anything from them).
pub fn write_events(path: &std::path::Path, events: &[Event]) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    writeln!(f, "id,kind,route,scheduled_us,picked_us,sent_us,answered_us,status,committed_us")?;
    let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for e in events {
        writeln!(f, "{},{},{},{},{},{},{},{},{}", e.id, e.kind, e.route, e.scheduled_us, o(e.picked_us), o(e.sent_us), o(e.answered_us), e.status, o(e.committed_us))?;
    }
    f.flush()?;
    Ok(())
}
