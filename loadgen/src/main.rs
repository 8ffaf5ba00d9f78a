//! `loadgen`: drives a Cairn (or BigchainDB-compatible) node with pre-signed transactions and
//! reports accepted (HTTP 202) and committed (valid, from the websocket stream) throughput and
//! latency, beside the machine's raw Ed25519 verify rate measured in the same run.
//!
//! Signing happens before the clock starts; the send schedule is open-loop (a fixed rate, or
//! as fast as `--concurrency` connections allow), and latencies are measured from each
//! transaction's scheduled send time, so a slow server cannot hide queueing (no coordinated
//! omission).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use ledger::crypto::Keypair;
use clap::Parser;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use cairn_loadgen::metrics::{Live, Reporter};

#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about = "Load generator for Cairn nodes: accepted vs committed tx/s and latency",
    long_about = "Load generator for Cairn nodes.\n\n\
Pre-signs --count CREATE transactions of ~765 bytes, posts them to --target over --concurrency\n\
keep-alive connections (open loop at --rate tx/s, or as fast as possible with --rate 0), and\n\
follows the node's websocket stream to time commits. Writes a JSON result with the run's\n\
metadata (tx size, node count, machine, durability) and appends a CSV row.\n\n\
Example: loadgen --target http://127.0.0.1:9984 --count 20000 --out results/single.json")]
struct Args {
    /// Node HTTP API base URL; several, comma-separated, get the transactions round-robin
    /// (commits are timed on the first node's stream: every node applies every block)
    #[arg(long, default_value = "http://127.0.0.1:9984", conflicts_with = "cluster")]
    target: String,
    /// A deployer cluster file (clusters/NAME/cluster.yaml): targets every running node of it
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Websocket stream URL [default: the one the node advertises in /api/v1/]
    #[arg(long)]
    ws: Option<String>,
    /// Transactions to send
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Concurrent HTTP connections
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered rate in tx/s (open loop); 0 sends as fast as the connections allow
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// POST mode: async (202 once durable in the backlog) or sync
    #[arg(long, default_value = "async", value_parser = ["async", "sync"])]
    mode: String,
    /// Seconds to wait for commits after the last accept
    #[arg(long, default_value_t = 60)]
    commit_timeout: u64,
    /// Number of nodes in the target federation (recorded in the results) [default: number of targets]
    #[arg(long)]
    nodes: Option<usize>,
    /// Before the run, measure the raw JetStream publish rate of messages of the same size
    /// (R as the node's streams, async with a bounded window) using the engine settings of
    /// this node config file; the result reports accepted tx/s as a ratio of it
    #[arg(long)]
    raw_jetstream: Option<PathBuf>,
    /// Durability of the target (recorded in the results)
    #[arg(long, default_value = "backlog fsync per group commit (embedded engine)")]
    durability: String,
    /// JSON results file (a CSV row is appended next to it, same name with .csv)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Send live metrics (offered, sent, accepted, rejected, committed, latencies) as StatsD
    /// to HOST:PORT once a second, e.g. the monitor's Telegraf at 127.0.0.1:8125
    #[arg(long, value_name = "HOST:PORT")]
    statsd: Option<String>,
    /// Run id: the `run` tag of the StatsD metrics and the "run" field of the results
    /// [default: run-<unix seconds>]
    #[arg(long)]
    run_id: Option<String>,
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "os": std::env::consts::OS,
    })
}

/// Strict Ed25519 verifications per second on all cores: the ceiling validation is held to.
fn raw_verify_rate() -> f64 {
    use ed25519_dalek::Signer;
    let keys: Vec<Keypair> = (0..256).map(|_| Keypair::generate()).collect();
    let msg = [9u8; 32];
    let sigs: Vec<_> = keys.iter().map(|k| k.signing.sign(&msg)).collect();
    let n = 20_000;
    let start = Instant::now();
    (0..n).into_par_iter().for_each(|i| {
        let k = &keys[i % 256];
        k.signing.verifying_key().verify_strict(&msg, &sigs[i % 256]).expect("valid signature");
    });
    n as f64 / start.elapsed().as_secs_f64()
}

/// What `--raw-jetstream` needs from a node's config file (`[database]`: servers, user,
/// password, replicas), read without the node runtime.
#[derive(serde::Deserialize)]
struct EngineAccess {
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default = "default_replicas")]
    replicas: usize,
}

fn default_replicas() -> usize {
    3
}

impl EngineAccess {
    fn load(path: &std::path::Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct File {
            database: Option<toml::Value>,
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading node config {}", path.display()))?;
        let file: File = toml::from_str(&text).with_context(|| format!("{} is not a cairn config (TOML)", path.display()))?;
        let db = file.database.with_context(|| format!("{} has no [database] section: pass a JetStream member's config.toml", path.display()))?;
        let access: EngineAccess = db.try_into().with_context(|| format!("[database] in {}", path.display()))?;
        if access.servers.is_empty() {
            anyhow::bail!("{} lists no database.servers: --raw-jetstream needs a JetStream member's config", path.display());
        }
        Ok(access)
    }

    async fn connect(&self) -> Result<async_nats::jetstream::Context> {
        let mut opts = async_nats::ConnectOptions::new().connection_timeout(std::time::Duration::from_secs(10)).name("loadgen");
        if !self.user.is_empty() {
            opts = opts.user_and_password(self.user.clone(), self.password.clone());
        }
        let servers: Vec<&str> = self.servers.iter().map(String::as_str).collect();
        let client = opts.connect(servers).await.with_context(|| format!("connecting to the engine at {}", self.servers.join(",")))?;
        Ok(async_nats::jetstream::new(client))
    }
}

/// Publishes `count` messages of `size` bytes to a scratch stream with the node streams'
/// replica count, asynchronously with at most 256 unacknowledged, each with its own
/// `Nats-Msg-Id` as the node's backlog writes carry; returns messages/s. The stream is deleted
/// afterwards.
async fn raw_jetstream_rate(config: &std::path::Path, count: usize, size: usize) -> Result<f64> {
    let db = EngineAccess::load(config)?;
    let js = db.connect().await?;
    let name = "LOADGEN_RAW";
    let _ = js.delete_stream(name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.into(),
        subjects: vec!["loadgen.raw".into()],
        num_replicas: db.replicas.clamp(1, db.servers.len().max(1)),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the scratch stream LOADGEN_RAW")?;
    let payload = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let mut window = std::collections::VecDeque::with_capacity(256);
    for i in 0..count {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("raw-{i}").as_str());
        window.push_back(js.publish_with_headers("loadgen.raw", h, payload.clone()).await?);
        if window.len() >= 256 {
            window.pop_front().expect("non-empty").await?;
        }
    }
    for a in window {
        a.await?;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    js.delete_stream(name).await.context("deleting the scratch stream LOADGEN_RAW")?;
    Ok(rate)
}

/// The API URLs of a deployer cluster file's running nodes, in index order.
fn cluster_targets(file: &std::path::Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Host {
        index: usize,
        role: String,
        api: Option<String>,
        state: String,
    }
    #[derive(serde::Deserialize)]
    struct File {
        version: u32,
        nodes: Vec<Host>,
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the cluster file {}", file.display()))?;
    let f: File = serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not a deployer cluster file", file.display()))?;
    if f.version != 1 {
        bail!("{}: cluster file version {} is not the one this loadgen reads (1): use the matching loadgen", file.display(), f.version);
    }
    let mut nodes: Vec<Host> = f.nodes.into_iter().filter(|h| h.role == "node" && h.state == "running" && h.api.is_some()).collect();
    nodes.sort_by_key(|h| h.index);
    if nodes.is_empty() {
        bail!("{} lists no running node: `deployer up` (or `deployer reset`) first", file.display());
    }
    Ok(nodes.into_iter().filter_map(|h| h.api).collect())
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn get_json(client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>, url: &str) -> Result<Value> {
    let resp = client.get(url.parse()?).await.with_context(|| format!("cannot reach {url}: is the node running? (start it with `cairn start`)"))?;
    let body = resp.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).with_context(|| format!("{url} did not answer JSON"))
}

async fn run(args: Args) -> Result<()> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    if args.rate < 0.0 {
        bail!("--rate must be >= 0 (0 means as fast as possible)");
    }
    let target_list = match &args.cluster {
        Some(f) => cluster_targets(f)?.join(","),
        None => args.target.clone(),
    };
    let targets: Vec<String> = target_list.split(',').map(|t| t.trim().trim_end_matches('/').to_string()).filter(|t| !t.is_empty()).collect();
    let Some(target) = targets.first().cloned() else { bail!("--target is empty: give a node URL such as http://127.0.0.1:9984") };
    let nodes = args.nodes.unwrap_or(targets.len());
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        format!("run-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
    });
    if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("--run-id {run_id:?}: use letters, digits, '-', '_' or '.' (it becomes a metric tag and a directory name)");
    }
    let mut reporter = match &args.statsd {
        Some(t) => Some(Reporter::new(t, &run_id)?),
        None => None,
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(args.concurrency).build_http();
    for t in &targets[1..] {
        get_json(&client, &format!("{t}/")).await?;
    }
    let info = get_json(&client, &format!("{target}/")).await?;
    let api = get_json(&client, &format!("{target}/api/v1/")).await?;
    let ws_url = match &args.ws {
        Some(w) => w.clone(),
        None => api["streams"].as_str().context("the node does not advertise a websocket stream; pass --ws")?.to_string(),
    };

    eprintln!("measuring raw Ed25519 verify rate on all cores...");
    let raw_rate = raw_verify_rate();
    let raw_js = match &args.raw_jetstream {
        Some(cfg) => {
            eprintln!("measuring raw JetStream publish rate ({} messages of {} B)...", args.count, ledger::workload::TX_BYTES);
            Some(raw_jetstream_rate(cfg, args.count, ledger::workload::TX_BYTES).await?)
        }
        None => None,
    };
    eprintln!("pre-signing {} transactions ({} B each)...", args.count, ledger::workload::TX_BYTES);
    let t_sign = Instant::now();
    // Fresh random keys per thread make every run's transactions unique.
    let bodies: Vec<(String, Bytes)> = (0..args.count as u64)
        .into_par_iter()
        .map_init(Keypair::generate, |k, i| {
            let v = ledger::workload::create_tx(k, i);
            (v["id"].as_str().expect("id").to_string(), Bytes::from(serde_json::to_vec(&v).expect("json")))
        })
        .collect();
    let tx_bytes = bodies.iter().map(|(_, b)| b.len()).sum::<usize>() / bodies.len();
    eprintln!("signed in {:.1}s", t_sign.elapsed().as_secs_f64());

    let ids: Arc<HashMap<String, usize>> = Arc::new(bodies.iter().enumerate().map(|(i, (id, _))| (id.clone(), i)).collect());
    let sent_at: Arc<Vec<Mutex<Option<Instant>>>> = Arc::new((0..args.count).map(|_| Mutex::new(None)).collect());
    let live = Arc::new(Live::new(reporter.is_some()));

    // Follow the commit stream before sending anything; only this run's transactions count.
    let (ws, _) = tokio_tungstenite::connect_async(&ws_url).await.with_context(|| format!("cannot open the websocket stream {ws_url}"))?;
    let commits: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::with_capacity(args.count)));
    {
        let (commits, ids, sent_at, live) = (commits.clone(), ids.clone(), sent_at.clone(), live.clone());
        tokio::spawn(async move {
            let (_, mut read) = ws.split();
            while let Some(Ok(msg)) = read.next().await {
                let Ok(text) = msg.into_text() else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                let Some(&i) = v["transaction_id"].as_str().and_then(|id| ids.get(id)) else { continue };
                let now = Instant::now();
                if commits.lock().expect("lock").insert(v["transaction_id"].as_str().unwrap_or_default().to_string(), now).is_none() {
                    let sent = *sent_at[i].lock().expect("lock");
                    live.commit(sent.map(|s| now.saturating_duration_since(s).as_micros() as u64).unwrap_or(0));
                }
            }
        });
    }

    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let start = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let urls: Vec<hyper::Uri> = targets.iter().map(|t| format!("{t}/api/v1/transactions?mode={}", args.mode).parse()).collect::<Result<_, _>>()?;
    let urls = Arc::new(urls);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, bodies, next, live, sent_at, errors, urls) =
            (client.clone(), bodies.clone(), next.clone(), live.clone(), sent_at.clone(), errors.clone(), urls.clone());
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
            let mut last_accept = start;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                // Open loop: the latency clock starts at the scheduled time, not when a
                // connection frees up.
                let scheduled = match interval {
                    Some(iv) => {
                        let t = start + iv * i as u32;
                        tokio::time::sleep_until(t.into()).await;
                        t
                    }
                    None => Instant::now(),
                };
                *sent_at[i].lock().expect("lock") = Some(scheduled);
                live.sent.fetch_add(1, Ordering::Relaxed);
                let req = hyper::Request::post(urls[i % urls.len()].clone())
                    .header("content-type", "application/json")
                    .body(Full::new(bodies[i].1.clone()))
                    .expect("request");
                match client.request(req).await {
                    Ok(resp) if resp.status() == 202 => {
                        let _ = resp.into_body().collect().await;
                        let now = Instant::now();
                        let us = now.duration_since(scheduled).as_micros() as u64;
                        hist.saturating_record(us);
                        live.accept(us);
                        last_accept = now;
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let msg: String = String::from_utf8_lossy(&body).chars().take(160).collect();
                        *errors.lock().expect("lock").entry(format!("{status}: {msg}")).or_default() += 1;
                        live.reject(status.as_str());
                    }
                    Err(e) => {
                        *errors.lock().expect("lock").entry(format!("transport: {e}")).or_default() += 1;
                        live.reject("transport");
                    }
                }
            }
            (hist, last_accept)
        }));
    }
    // Progress (and StatsD, with --statsd) once a second until the run ends.
    let total = args.count;
    let offered = move |live: &Live| match interval {
        Some(iv) => ((start.elapsed().as_secs_f64() / iv.as_secs_f64()) as u64 + 1).min(total as u64),
        None => live.sent.load(Ordering::Relaxed),
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let progress = {
        let (live, stop) = (live.clone(), stop.clone());
        let mut reporter = reporter.take();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.notified() => true,
                };
                if stopping {
                    // The last partial second, so the dashboards' totals match the results file.
                    if let Some(r) = reporter.as_mut() {
                        r.report(&live, offered(&live));
                    }
                    return;
                }
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>5.1}s] accepted {}/{total}  committed {}  rejected {}",
                    start.elapsed().as_secs_f64(),
                    load(&live.accepted),
                    load(&live.committed),
                    load(&live.rejected)
                );
                if let Some(r) = reporter.as_mut() {
                    r.report(&live, offered(&live));
                }
            }
        })
    };
    let mut accept_hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut last_accept = start;
    for w in workers {
        let (h, t) = w.await?;
        accept_hist.add(&h)?;
        last_accept = last_accept.max(t);
    }
    let n_accepted = live.accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(args.commit_timeout);
    loop {
        let ours = commits.lock().expect("lock").len() as u64;
        if ours >= n_accepted || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_one();
    progress.await?;
    let commits = commits.lock().expect("lock").clone();
    let mut commit_hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut last_commit = start;
    let mut n_committed = 0u64;
    for (id, at) in &commits {
        if let Some(&i) = ids.get(id.as_str()) {
            if let Some(sent) = *sent_at[i].lock().expect("lock") {
                commit_hist.saturating_record(at.saturating_duration_since(sent).as_micros() as u64);
                n_committed += 1;
                last_commit = last_commit.max(*at);
            }
        }
    }
    let accept_secs = last_accept.duration_since(start).as_secs_f64().max(1e-9);
    let commit_secs = last_commit.duration_since(start).as_secs_f64().max(1e-9);
    let committed_tps = n_committed as f64 / commit_secs;
    let result = json!({
        "tool": "cairn loadgen",
        "run": run_id,
        "version": env!("CARGO_PKG_VERSION"),
        "target": targets,
        "node": {"software": info["software"], "version": info["version"], "public_key": info["public_key"]},
        "nodes": nodes,
        "raw_jetstream_publish_per_s": raw_js,
        "accepted_to_raw_jetstream_ratio": raw_js.map(|r| n_accepted as f64 / accept_secs / r),
        "durability": args.durability,
        "machine": machine(),
        "workload": {"operation": "CREATE", "tx_bytes": tx_bytes, "count": args.count, "mode": args.mode,
                     "concurrency": args.concurrency, "offered_rate": if args.rate > 0.0 { json!(args.rate) } else { json!("max") }},
        "accepted": {"count": n_accepted, "tx_per_s": n_accepted as f64 / accept_secs,
                     "latency_ms": {"p50": pct(&accept_hist, 0.5), "p90": pct(&accept_hist, 0.9), "p99": pct(&accept_hist, 0.99), "max": pct(&accept_hist, 1.0)}},
        "committed": {"count": n_committed, "tx_per_s": committed_tps,
                      "latency_ms": {"p50": pct(&commit_hist, 0.5), "p90": pct(&commit_hist, 0.9), "p99": pct(&commit_hist, 0.99), "max": pct(&commit_hist, 1.0)}},
        "rejected": {"count": live.rejected.load(Ordering::Relaxed), "reasons": *errors.lock().expect("lock")},
        "raw_ed25519_verify_per_s_all_cores": raw_rate,
        "committed_to_raw_verify_ratio": committed_tps / raw_rate,
        "note": "loadgen runs on the same machine as the node unless stated otherwise; committed = in a block decided VALID",
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    eprintln!(
        "\n{} nodes, {} B CREATEs: accepted {:.0} tx/s, committed {:.0} tx/s (p99 commit latency {:.0} ms); raw verify {:.0}/s; ratio {:.2}",
        nodes, tx_bytes, n_accepted as f64 / accept_secs, committed_tps, pct(&commit_hist, 0.99), raw_rate, committed_tps / raw_rate
    );
    if let Some(r) = raw_js {
        eprintln!("raw JetStream publish {r:.0} msg/s of {} B; accepted/raw ratio {:.2}", ledger::workload::TX_BYTES, n_accepted as f64 / accept_secs / r);
    }
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&result)?)?;
        let csv = out.with_extension("csv");
        let new = !csv.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&csv)?;
        use std::io::Write;
        if new {
            writeln!(f, "nodes,tx_bytes,count,concurrency,offered_rate,accepted_tps,committed_tps,commit_p50_ms,commit_p99_ms,raw_verify_per_s,ratio,raw_jetstream_per_s,accepted_to_raw_jetstream,durability")?;
        }
        writeln!(f, "{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.0},{:.3},{},{},\"{}\"", nodes, tx_bytes, args.count, args.concurrency,
            if args.rate > 0.0 { args.rate.to_string() } else { "max".into() }, n_accepted as f64 / accept_secs, committed_tps,
            pct(&commit_hist, 0.5), pct(&commit_hist, 0.99), raw_rate, committed_tps / raw_rate,
            raw_js.map(|r| format!("{r:.0}")).unwrap_or_default(), raw_js.map(|r| format!("{:.3}", n_accepted as f64 / accept_secs / r)).unwrap_or_default(),
            args.durability)?;
        eprintln!("results written to {} and {}", out.display(), csv.display());
    }
    if n_accepted < args.count as u64 {
        bail!("{} of {} transactions were rejected; see \"rejected.reasons\" above", args.count as u64 - n_accepted, args.count);
    }
    if n_committed < n_accepted {
        bail!("only {n_committed} of {n_accepted} accepted transactions committed within {}s", args.commit_timeout);
    }
    Ok(())
}
