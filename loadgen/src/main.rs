//! `loadgen`: drives Cairn (or BigchainDB-compatible) nodes with pre-signed transactions and
//! reports offered, accepted (HTTP 202), rejected, lost and committed (VALID on the websocket
//! stream) counts, rates and latencies.
//!
//! `loadgen run` measures one point against given nodes; `loadgen sweep` draws the writes/s
//! versus node-count curve over fresh federations (this machine or a deployer cluster) with a
//! correctness gate, fault schedules and a report; `loadgen compare` diffs two sweeps. Signing
//! happens before the clock starts; the schedule is open loop, and latency runs from each
//! transaction's scheduled send time (no coordinated omission).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use cairn_loadgen::fleet::{cluster_members, Fleet, Programs};
use cairn_loadgen::http::{client, get_json};
use cairn_loadgen::metrics::{Live, Reporter};
use cairn_loadgen::point::{self, Latency, Settings, Targets};
use cairn_loadgen::progress::Progress;
use cairn_loadgen::provenance::{self, RawVerify};
use cairn_loadgen::report::RunSummary;
use cairn_loadgen::sweep;
use cairn_loadgen::workload::{Kind, Spec};
use clap::{Args, Parser, Subcommand};
use ledger::crypto::Keypair;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// mimalloc instead of glibc malloc: per-transaction allocations (JSON, HTTP buffers, LSM
/// entries) spent ~15 % of the node's CPU in glibc's malloc/free/consolidate under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "loadgen", version = env!("CAIRN_VERSION"), about = "Load generator for Cairn: one run, node-count sweeps with a report, comparisons",
    long_about = "Load generator for Cairn nodes.\n\n\
  loadgen run      one measured run against given nodes (--target URLs or --cluster FILE)\n\
  loadgen sweep    the writes/s versus nodes curve: fresh federations of each size (--local, or a\n\
                   deployer --cluster), capacity search at a latency objective, a correctness gate,\n\
                   fault schedules, results directory with CSV, plots and an HTML report\n\
  loadgen compare  differences between two sweeps; non-zero exit past a threshold\n\n\
Without a subcommand, `run` is assumed (loadgen --target URL ... as before).\n\
Accepted = HTTP 202 (durable in the backlog); committed = in a block decided VALID, seen on the\n\
node's websocket stream. Latencies run from each transaction's scheduled send time.")]
struct Cli {
    /// Worker threads of loadgen's async runtime [default: one per core]. On a machine shared
    /// with the target, fewer threads than cores can send more (fewer cross-thread wake-ups)
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One measured run against running nodes
    ///
    /// Reports offered, accepted, rejected, lost and committed transactions with their latencies,
    /// and committed tx/s as a ratio of this machine's raw Ed25519 verify rate, measured before
    /// and after the run (the ratio uses their mean; a NOTE says when they differ by more than
    /// 10 %: the machine's speed was not steady).
    Run(Box<RunArgs>),
    /// Writes/s versus node count over fresh federations, with a report
    Sweep(Box<SweepArgs>),
    /// Compare two sweeps (results directories or run.json files)
    Compare {
        /// The baseline
        a: PathBuf,
        /// The candidate
        b: PathBuf,
        /// Percent past which a drop in committed tx/s (or a rise in commit p99) fails
        #[arg(long, default_value_t = 10.0)]
        threshold: f64,
    },
}

/// What is sent: shared by run and sweep.
#[derive(Args, Debug, Clone)]
struct WorkloadArgs {
    /// create (CREATEs of --tx-bytes), transfer (TRANSFER chains spending earlier outputs), or
    /// mix (--transfer-share of TRANSFERs among CREATEs)
    #[arg(long, default_value = "create", value_parser = ["create", "transfer", "mix"])]
    workload: String,
    /// Size of each CREATE in bytes of canonical JSON (BigchainDB's benchmarks used 765)
    #[arg(long, default_value_t = ledger::workload::TX_BYTES)]
    tx_bytes: usize,
    /// Share of TRANSFERs in a mix
    #[arg(long, default_value_t = 0.5)]
    transfer_share: f64,
    /// TRANSFERs per chain: link k+1 spends link k and is sent once link k is committed
    #[arg(long, default_value_t = 1)]
    chain_depth: usize,
    /// Share of all transactions that are conflicting double-spend pairs (two TRANSFERs of one
    /// output sent at once to different nodes; at most one may commit)
    #[arg(long, default_value_t = 0.0)]
    double_spend_share: f64,
    /// Seed of every key and so of every transaction [default: random, recorded in the results]
    #[arg(long)]
    seed: Option<u64>,
}

impl WorkloadArgs {
    fn spec(&self) -> Result<Spec> {
        let s = Spec {
            workload: self.workload.clone(),
            tx_bytes: self.tx_bytes,
            transfer_share: match self.workload.as_str() {
                "create" => 0.0,
                "transfer" => 1.0,
                _ => self.transfer_share,
            },
            chain_depth: self.chain_depth,
            double_spend_share: self.double_spend_share,
            seed: self.seed.unwrap_or_else(|| u64::from_le_bytes(Keypair::generate().public_bytes()[..8].try_into().expect("8 bytes"))),
        };
        s.check()?;
        Ok(s)
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Node HTTP API base URL; several, comma-separated, share the transactions (commits are
    /// timed on the first node's stream: every node applies every block)
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
    /// Requests in flight per target node: that many workers per node, each with its own
    /// keep-alive connection (so each node sees the same load whatever their number)
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered rate in tx/s (open loop); 0 sends as fast as the connections allow
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// POST mode: async (202 once durable in the backlog) or sync
    #[arg(long, default_value = "async", value_parser = ["async", "sync"])]
    mode: String,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Seconds to wait for commits after the last answer
    #[arg(long, default_value_t = 60)]
    commit_timeout: u64,
    /// Only measure acceptance: no node checks, no commit stream (for a bare HTTP endpoint,
    /// e.g. measuring loadgen's own ceiling)
    #[arg(long)]
    accept_only: bool,
    /// Number of nodes in the target federation (recorded) [default: number of targets]
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
    /// JSON results file (a CSV row is appended next to it, same name with .csv; per-transaction
    /// events go to the same name with .events.csv)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Send live metrics as StatsD to HOST:PORT once a second, e.g. the monitor's Telegraf at 127.0.0.1:8125
    #[arg(long, value_name = "HOST:PORT")]
    statsd: Option<String>,
    /// Run id: the `run` tag of the StatsD metrics and the "run" field of the results [default: run-<unix seconds>]
    #[arg(long)]
    run_id: Option<String>,
    /// Print the result JSON on stdout (the default when stdout is not a terminal)
    #[arg(long)]
    json: bool,
    /// Plain progress lines even on a terminal
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
#[command(long_about = "The writes/s versus node-count curve.\n\n\
For each N of --nodes: a fresh federation (--local: this machine, one node with the embedded engine\n\
for N = 1 and a local deployer cluster of nats-servers for more; --cluster FILE: `deployer reset\n\
--nodes N` on a deployed cluster), a preflight (every node answers, one keyring), a capacity search\n\
(double from --start-rate until a probe misses the objective, then --search-steps bisections), a\n\
measured run at half the highest rate that met it (with --faults), then the correctness gate\n\
(every accepted transaction in exactly one VALID block on every node, state digests agree, no\n\
double-spend pair with both sides committed). Results: --out DIR (default results/<run-id>) with\n\
run.json, points.csv, timeseries.csv, events-n<N>.csv, SVG and PNG plots and index.html.\n\
An interrupted sweep continues with --resume DIR.\n\n\
Fault schedule (--faults FILE, YAML):\n\
  faults:\n\
    - {at: 5s, action: kill, node: 1, target: node, for: 5s}   # kill | stop | restart | pause; node | engine\n\n\
Example (a few minutes on 2 cores):\n\
  loadgen sweep --local --nodes 1,2,3 --probe-secs 5 --hold-secs 10")]
struct SweepArgs {
    /// Node counts, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    nodes: Vec<usize>,
    /// Fresh federations on this machine
    #[arg(long, conflicts_with = "cluster", required_unless_present_any = ["cluster", "resume"])]
    local: bool,
    /// A deployer cluster file: each point resets it to its first N nodes
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Hold this offered rate at every point instead of searching for the highest one
    #[arg(long)]
    rate: Option<f64>,
    /// First rate the search tries (tx/s)
    #[arg(long, default_value_t = 1000.0)]
    start_rate: f64,
    /// Highest rate the search tries (tx/s)
    #[arg(long, default_value_t = 64_000.0)]
    max_rate: f64,
    /// Bisection steps after the first probe that misses the objective
    #[arg(long, default_value_t = 2)]
    search_steps: usize,
    /// Seconds each search probe offers load
    #[arg(long, default_value_t = 10.0)]
    probe_secs: f64,
    /// Seconds of the measured run at half the highest rate
    #[arg(long, default_value_t = 20.0)]
    hold_secs: f64,
    /// Objective: commit latency p99 at most this many milliseconds
    #[arg(long, default_value_t = 2000.0)]
    slo_p99_ms: f64,
    /// Objective: at least this share of offered transactions committed
    #[arg(long, default_value_t = 0.95)]
    slo_committed: f64,
    /// Requests in flight per target node: that many workers per node, each with its own
    /// keep-alive connection (so each node sees the same load whatever their number)
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to wait for commits after the last answer
    #[arg(long, default_value_t = 60)]
    commit_timeout: u64,
    /// A run whose send lag p99 exceeds this (ms) is marked invalid
    #[arg(long, default_value_t = 250)]
    max_lag_ms: u64,
    /// Fault schedule (YAML) applied during each point's measured run
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// Results directory [default: results/<run-id>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the interrupted sweep in DIR (its manifest holds the flags)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["local", "cluster"])]
    resume: Option<PathBuf>,
    /// Run id [default: sweep-<unix seconds>]
    #[arg(long)]
    run_id: Option<String>,
    /// `cairn` binary [default: beside loadgen]
    #[arg(long)]
    cairn_binary: Option<PathBuf>,
    /// `deployer` binary [default: beside loadgen]
    #[arg(long)]
    deployer: Option<PathBuf>,
    /// nats-server for local federations [default: the deployer's]
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// Print the points as JSON on stdout at the end
    #[arg(long)]
    json: bool,
    /// Plain progress lines even on a terminal
    #[arg(long)]
    plain: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn check_run_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("--run-id {id:?}: use letters, digits, '-', '_' or '.' (it becomes a metric tag and a directory name)");
    }
    Ok(())
}

fn main() {
    // `loadgen --target ...` (no subcommand) keeps meaning `loadgen run ...`.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let first = argv.get(1).and_then(|a| a.to_str()).map(str::to_string);
    if first.as_deref().is_none_or(|a| a.starts_with("--") && !["--help", "--version"].contains(&a)) {
        argv.insert(1, "run".into());
    }
    let cli = Cli::parse_from(argv);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = cli.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().expect("starting the async runtime");
    rt.block_on(dispatch(cli));
}

async fn dispatch(cli: Cli) {
    let result = match cli.cmd {
        Cmd::Run(a) => run(*a).await,
        Cmd::Sweep(a) => {
            // Ctrl-C or SIGTERM: drop the sweep, which removes its local federations (finished
            // points stay in the manifest for --resume).
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                r = sweep_cmd(*a) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted: local federations removed; finished points are kept, continue with `loadgen sweep --resume DIR`")),
                _ = term.recv() => Err(anyhow::anyhow!("terminated: local federations removed; finished points are kept, continue with `loadgen sweep --resume DIR`")),
            }
        }
        Cmd::Compare { a, b, threshold } => match cairn_loadgen::compare::compare(&a, &b, threshold) {
            Ok(bad) if bad.is_empty() => {
                println!("no difference past {threshold} %");
                Ok(())
            }
            Ok(bad) => {
                for l in &bad {
                    eprintln!("regression: {l}");
                }
                std::process::exit(2);
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn sweep_cmd(a: SweepArgs) -> Result<()> {
    let progress = Progress::new(a.plain);
    let (run_id, cfg, out) = match &a.resume {
        Some(dir) => {
            let (id, cfg) = sweep::resume_config(dir)?;
            (id, cfg, dir.clone())
        }
        None => {
            let id = a.run_id.clone().unwrap_or_else(|| format!("sweep-{}", unix_now()));
            check_run_id(&id)?;
            if a.nodes.is_empty() || a.nodes.contains(&0) {
                bail!("--nodes needs node counts of at least 1, e.g. --nodes 1,2,4");
            }
            if a.rate.is_some_and(|r| r <= 0.0) || a.start_rate <= 0.0 || a.max_rate < a.start_rate {
                bail!("rates must be positive and --max-rate at least --start-rate");
            }
            if a.probe_secs < 1.0 || a.hold_secs < 1.0 {
                bail!("--probe-secs and --hold-secs must be at least 1");
            }
            let faults = a.faults.as_deref().map(cairn_loadgen::faults::Schedule::load).transpose()?;
            if let Some(f) = &faults {
                if f.end() >= a.hold_secs {
                    bail!("the fault schedule ends at {:.1} s but the measured run lasts {} s: raise --hold-secs past the last heal", f.end(), a.hold_secs);
                }
            }
            let cfg = sweep::Config {
                nodes: a.nodes.clone(),
                fleet: match &a.cluster {
                    Some(f) => f.display().to_string(),
                    None => "local".into(),
                },
                workload: a.workload.spec()?,
                rate: a.rate,
                start_rate: a.start_rate,
                max_rate: a.max_rate,
                search_steps: a.search_steps,
                probe_secs: a.probe_secs,
                hold_secs: a.hold_secs,
                slo_p99_ms: a.slo_p99_ms,
                slo_committed: a.slo_committed,
                concurrency: a.concurrency,
                faults,
                commit_timeout: a.commit_timeout,
                max_lag_ms: a.max_lag_ms,
            };
            let out = a.out.clone().unwrap_or_else(|| PathBuf::from("results").join(&id));
            (id, cfg, out)
        }
    };
    let programs = Programs::find(a.cairn_binary.clone(), a.deployer.clone(), a.nats_server.clone())?;
    let fleet = if cfg.fleet == "local" {
        Fleet::local(programs.clone(), out.join("fleet"))
    } else {
        let f = Fleet::deployed(programs.clone(), std::path::Path::new(&cfg.fleet))?;
        if let Some(cap) = f.capacity() {
            if let Some(n) = cfg.nodes.iter().find(|n| **n > cap) {
                bail!("{} has {cap} nodes; --nodes asks for {n}: `deployer up --nodes {n}` first, or sweep fewer", cfg.fleet);
            }
        }
        f
    };
    let mut binaries = json!({
        "loadgen": provenance::binary(&std::env::current_exe()?),
        "cairn": provenance::binary(&programs.cairn),
        "deployer": provenance::binary(&programs.deployer),
    });
    if let Some(ns) = &programs.nats_server {
        binaries["nats-server"] = provenance::binary(ns);
    }
    // The hosts a deployed cluster runs on (instance types), from its cluster file.
    let hosts = if cfg.fleet == "local" {
        json!("this machine (see machine)")
    } else {
        let text = std::fs::read_to_string(&cfg.fleet).unwrap_or_default();
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
        let list: Vec<Value> = y["nodes"].as_sequence().into_iter().flatten().map(|h| json!({"index": h["index"].as_u64(), "role": h["role"].as_str(), "instance_type": h["instance_type"].as_str()})).collect();
        json!({"provider": y["provider"].as_str(), "region": y["region"].as_str(), "hosts": list})
    };
    progress.say("measuring this machine's raw Ed25519 verify rate (recorded beside the figures)");
    let mut machine = provenance::machine();
    machine["raw_ed25519_verify_per_s_all_cores"] = json!(provenance::raw_verify_rate());
    let prov = json!({
        "hosts": hosts,
        "started": unix_now(),
        "git": provenance::git(),
        "binaries": binaries,
        "machine": machine,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    progress.say(&format!("sweep {run_id}: nodes {:?}, results in {}", cfg.nodes, out.display()));
    let points = sweep::run(cfg, &run_id, &out, fleet, prov, &progress).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&points)?);
    }
    eprintln!("\n                  highest rate meeting the objective   measured run (half of it, or --rate)");
    eprintln!("nodes  status    offered tx/s  committed tx/s    offered  accepted  committed  commit p50/p99 ms  gate");
    let dash = || "–".to_string();
    for p in &points {
        let m = p.measured.as_ref();
        eprintln!(
            "{:>5}  {:<7}  {:>12}  {:>14}  {:>9}  {:>8}  {:>9}  {:>17}  {}",
            p.nodes,
            p.status,
            p.max_rate.map(|v| format!("{v:.0}")).unwrap_or_else(dash),
            p.max_committed_tps.map(|v| format!("{v:.0}")).unwrap_or_else(dash),
            m.map(|m| format!("{:.0}", m.rate)).unwrap_or_else(dash),
            m.map(|m| format!("{:.0}", m.accepted_tps)).unwrap_or_else(dash),
            m.map(|m| format!("{:.0}", m.committed_tps)).unwrap_or_else(dash),
            m.map(|m| format!("{:.0} / {:.0}", m.commit_latency_ms.p50, m.commit_latency_ms.p99)).unwrap_or_else(dash),
            if p.gate.passed { "passed" } else { "failed" }
        );
    }
    eprintln!("report: {}", out.join("index.html").display());
    if let Some(p) = points.iter().find(|p| p.status == "failed") {
        bail!("point {} failed: {}", p.nodes, p.reasons.join("; "));
    }
    Ok(())
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

async fn run(args: RunArgs) -> Result<()> {
    use std::io::IsTerminal;
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be >= 0 (0 means as fast as possible)");
    }
    let spec = args.workload.spec()?;
    let progress = Progress::new(args.plain);
    let targets: Vec<String> = match &args.cluster {
        Some(f) => {
            let (m, _) = cluster_members(f)?;
            if m.is_empty() {
                bail!("{} lists no running node: `deployer up` (or `deployer reset`) first", f.display());
            }
            m.into_iter().map(|m| m.api).collect()
        }
        None => args.target.split(',').map(|t| t.trim().trim_end_matches('/').to_string()).filter(|t| !t.is_empty()).collect(),
    };
    let Some(target) = targets.first().cloned() else { bail!("--target is empty: give a node URL such as http://127.0.0.1:9984") };
    let nodes = args.nodes.unwrap_or(targets.len());
    cairn_loadgen::http::ensure_open_files(args.concurrency * targets.len())?;
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("run-{}", unix_now()));
    check_run_id(&run_id)?;
    let mut reporter = match &args.statsd {
        Some(t) => Some(Reporter::new(t, &run_id)?),
        None => None,
    };
    let http = client(args.concurrency);
    let (info, ws_url) = if args.accept_only {
        (Value::Null, String::new())
    } else {
        for t in &targets[1..] {
            get_json(&http, &format!("{t}/")).await?.with_context(|| format!("{t}/ answers 404: not a Cairn node"))?;
        }
        if targets.len() > 1 {
            let members: Vec<cairn_loadgen::fleet::Member> = targets.iter().map(|t| cairn_loadgen::fleet::Member { api: t.clone(), ws: String::new() }).collect();
            sweep::preflight(&http, &members, false).await?;
        }
        let info = get_json(&http, &format!("{target}/")).await?.with_context(|| format!("{target}/ answers 404: not a Cairn node"))?;
        let api = get_json(&http, &format!("{target}/api/v1/")).await?.with_context(|| format!("{target}/api/v1/ answers 404"))?;
        let ws = match &args.ws {
            Some(w) => w.clone(),
            None => api["streams"].as_str().context("the node does not advertise a websocket stream; pass --ws")?.to_string(),
        };
        (info, ws)
    };

    progress.say("measuring the raw Ed25519 verify rate on all cores");
    let raw_before = provenance::raw_verify_rate();
    let raw_js = match &args.raw_jetstream {
        Some(cfg) => {
            progress.say(&format!("measuring the raw JetStream publish rate ({} messages of {} B)", args.count, spec.tx_bytes));
            Some(raw_jetstream_rate(cfg, args.count, spec.tx_bytes).await?)
        }
        None => None,
    };
    // The plan's salt is recorded with the seed: together they reproduce the transactions.
    let salt = unix_now();
    let plan = sweep::sign(&spec, args.count, targets.len(), salt, &progress, "run");
    let tx_bytes = plan.timed.iter().filter(|t| t.kind == Kind::Create).map(|t| t.body.len()).sum::<usize>() / plan.timed.iter().filter(|t| t.kind == Kind::Create).count().max(1);

    let live = Arc::new(Live::new(reporter.is_some()));
    let settings = Settings {
        rate: args.rate,
        concurrency: args.concurrency,
        mode: args.mode.clone(),
        commit_timeout: Duration::from_secs(args.commit_timeout),
        stall: Duration::from_secs(30),
        max_lag: Duration::from_millis(250),
    };
    let down: point::Down = Arc::new((0..targets.len()).map(|_| AtomicBool::new(false)).collect());
    let t = Targets { api: targets.clone(), ws: ws_url.clone() };
    let outcome = if args.accept_only {
        if !plan.setup.is_empty() {
            bail!("--accept-only sends CREATEs only: TRANSFERs and double-spend pairs need commits");
        }
        point::run(&t, &plan, &settings, live.clone(), down, &progress, "sending").await?
    } else {
        point::setup(&http, &t, &plan.setup, args.concurrency, Duration::from_secs(args.commit_timeout.max(60)), &progress).await?;
        // StatsD once a second while the run lasts, then the final partial second.
        let stop = Arc::new(tokio::sync::Notify::new());
        let reporting = reporter.take().map(|mut r| {
            let (live, stop) = (live.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    let stopping = tokio::select! { _ = tick.tick() => false, _ = stop.notified() => true };
                    r.report(&live, live.offered.load(Ordering::Relaxed));
                    if stopping {
                        return;
                    }
                }
            })
        });
        let o = point::run(&t, &plan, &settings, live.clone(), down, &progress, "sending").await;
        stop.notify_one();
        if let Some(r) = reporting {
            let _ = r.await;
        }
        o?
    };
    progress.say("measuring the raw Ed25519 verify rate again (this machine's speed can drift during a run)");
    let raw = RawVerify::of(raw_before, provenance::raw_verify_rate());
    let raw_rate = raw.mean();
    let s = RunSummary::of(&outcome, args.rate, 0.0, f64::MAX, 0.0);
    let lat = |l: &Latency| json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max});
    let c = &outcome.counts;
    let result = json!({
        "tool": "cairn loadgen",
        "run": run_id,
        "version": env!("CARGO_PKG_VERSION"),
        "build_commit": env!("CAIRN_BUILD_COMMIT"),
        "git": provenance::git(),
        "target": targets,
        "node": {"software": info["software"], "version": info["version"], "public_key": info["public_key"]},
        "nodes": nodes,
        "raw_jetstream_publish_per_s": raw_js,
        "accepted_to_raw_jetstream_ratio": raw_js.map(|r| outcome.accepted_tps / r),
        "durability": args.durability,
        "machine": provenance::machine(),
        "workload": {"operation": spec.workload, "spec": spec, "salt": salt, "tx_bytes": tx_bytes, "count": args.count, "mode": args.mode,
                     "concurrency": args.concurrency, "offered_rate": if args.rate > 0.0 { json!(args.rate) } else { json!("max") }},
        "counts": c,
        "accepted": {"count": c.accepted, "tx_per_s": outcome.accepted_tps, "latency_ms": lat(&s.accept_latency_ms)},
        "committed": {"count": c.committed, "tx_per_s": outcome.committed_tps, "latency_ms": lat(&s.commit_latency_ms)},
        "rejected": {"count": c.rejected, "reasons": outcome.reasons},
        "lost": c.lost,
        "send_lag_ms": lat(&s.send_lag_ms),
        "connection_wait_ms": lat(&s.connection_wait_ms),
        "generator_cpu": outcome.generator_cpu,
        "invalid": outcome.invalid,
        "raw_ed25519_verify_per_s_all_cores": raw_rate,
        "raw_ed25519_verify_per_s_before_and_after": [raw.before, raw.after],
        "raw_verify_drift": raw.drift(),
        "committed_to_raw_verify_ratio": outcome.committed_tps / raw_rate,
        "note": "loadgen runs on the same machine as the node unless stated otherwise; committed = in a block decided VALID; latency from the scheduled send time",
    });
    if args.json || !std::io::stdout().is_terminal() {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    eprintln!(
        "\n{} nodes, {} B {}: offered {}, accepted {} ({:.0} tx/s), rejected {}, lost {}, committed {} ({:.0} tx/s, p99 commit latency {:.0} ms); raw verify {:.0}/s (mean of {:.0} before and {:.0} after); ratio {:.2}",
        nodes, tx_bytes, spec.workload, c.offered, c.accepted, outcome.accepted_tps, c.rejected, c.lost, c.committed, outcome.committed_tps, s.commit_latency_ms.p99, raw_rate, raw.before, raw.after, outcome.committed_tps / raw_rate
    );
    for r in &outcome.invalid {
        eprintln!("INVALID: {r}");
    }
    if let Some(w) = raw.warning() {
        eprintln!("NOTE: {w}");
    }
    if let Some(r) = raw_js {
        eprintln!("raw JetStream publish {r:.0} msg/s of {} B; accepted/raw ratio {:.2}", spec.tx_bytes, outcome.accepted_tps / r);
    }
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&result)?)?;
        point::write_events(&out.with_extension("events.csv"), &outcome.events)?;
        let csv = out.with_extension("csv");
        let new = !csv.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&csv)?;
        use std::io::Write;
        if new {
            writeln!(f, "nodes,tx_bytes,count,concurrency,offered_rate,accepted_tps,committed_tps,commit_p50_ms,commit_p99_ms,raw_verify_per_s,ratio,raw_jetstream_per_s,accepted_to_raw_jetstream,durability")?;
        }
        writeln!(f, "{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.0},{:.3},{},{},\"{}\"", nodes, tx_bytes, args.count, args.concurrency,
            if args.rate > 0.0 { args.rate.to_string() } else { "max".into() }, outcome.accepted_tps, outcome.committed_tps,
            s.commit_latency_ms.p50, s.commit_latency_ms.p99, raw_rate, outcome.committed_tps / raw_rate,
            raw_js.map(|r| format!("{r:.0}")).unwrap_or_default(), raw_js.map(|r| format!("{:.3}", outcome.accepted_tps / r)).unwrap_or_default(),
            args.durability)?;
        eprintln!("results written to {}, {} and {}", out.display(), csv.display(), out.with_extension("events.csv").display());
    }
    if let Some(m) = &outcome.stalled {
        bail!("{m}");
    }
    let expected_refusals = outcome.events.iter().filter(|e| e.kind == "conflict" && e.status != 202 && e.status != 0).count() as u64;
    if c.accepted + expected_refusals < c.offered {
        bail!("{} of {} transactions were not accepted ({} rejected, {} lost); see \"rejected.reasons\" above", c.offered - c.accepted, c.offered, c.rejected, c.lost);
    }
    if !args.accept_only && c.committed + c.conflict_losers < c.accepted {
        bail!("only {} of {} accepted transactions committed within {}s", c.committed, c.accepted, args.commit_timeout);
    }
    Ok(())
}
