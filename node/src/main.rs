//! `cairn`: run and administer a Cairn node (commands modelled on BigchainDB's).

use anyhow::{bail, Context, Result};
use cairn::config::{self, Config};
use cairn::crypto::Keypair;
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// mimalloc instead of glibc malloc: per-transaction allocations (JSON, HTTP buffers, LSM
/// entries) spent ~15 % of the node's CPU in glibc's malloc/free/consolidate under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h of the v3 sources that
/// libmimalloc-sys builds; the Rust bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Raises the soft open-file limit to the hard one, as Go programs such as nats-server do at
/// start. Every client connection and every fjall table is a file; at a shell's usual soft
/// limit of 1,024 the API stopped accepting past ~1,000 clients, and axum retries a failed
/// accept a second later without a word. Returns (before, now).
fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let (before, _) = rlimit::Resource::NOFILE.get()?;
    Ok((before, rlimit::increase_nofile_limit(u64::MAX)?))
}

/// Below this many open files a node warns at start: client connections, fjall tables and the
/// engine's sockets would share too few.
const FEW_OPEN_FILES: u64 = 4096;

/// Keeps memory the node freed instead of returning it to the OS: under load mimalloc purged
/// freed pages and the next burst faulted them back in, zeroing each (`perf` of a federation
/// member: 8.6 % of its CPU in page faults, 1.0 minor fault per transaction; with purging off
/// 0.1). The node's memory stays bounded by its caches and queues; peak RSS at 1,000,000
/// transactions rose from ~300 to ~400 MiB (docs/performance.md).
fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option; mimalloc reads it at each purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[derive(Parser)]
#[command(name = "cairn", version = env!("CAIRN_VERSION"), about = "Cairn: a BigchainDB-compatible blockchain database node",
    long_about = "Cairn: a BigchainDB-compatible blockchain database node.\n\n\
Quick start:  cairn configure -y && cairn start\n\
Configuration is read from the config file, then CAIRN_* environment variables, then flags\n\
(later wins). The config file holds the node's private key and is written with mode 0600.")]
struct Cli {
    /// Config file [default: $CAIRN_CONFIG or ~/.cairn/config.toml]
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a config file with a fresh keypair (keeps the existing keypair if the file exists)
    Configure {
        /// Accept every default without asking
        #[arg(short = 'y', long)]
        yes: bool,
        /// Take every setting except the keypair from FILE (a config written by the deployer
        /// or dev-cluster for this member: keyring, engine servers, binds); the keypair already
        /// in the config is kept, or generated, and never leaves this machine
        #[arg(long, value_name = "FILE")]
        federation: Option<PathBuf>,
    },
    /// Print the effective configuration (file < env < defaults); the private key is hidden
    ShowConfig,
    /// Print this node's public key (to give to the other nodes' keyrings)
    ExportMyPubkey,
    /// Create the database (done automatically by `start` when missing)
    Init,
    /// Delete the database and everything in it
    Drop {
        /// Do not ask for confirmation
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Run the node: HTTP API, websocket stream and the block/vote pipeline
    Start(StartArgs),
    /// jetstream: change the replica count of every Cairn stream (capped by the number of
    /// servers in database.servers); the engine moves the data while nodes keep running
    SetReplicas {
        /// Replicas per stream (3 tolerates one failed server)
        replicas: usize,
    },
    /// jetstream: create backlog partitions up to N (never fewer: partitions hold data);
    /// restart every node afterwards so they all write to and build from the new partitions
    SetShards {
        /// Number of backlog partitions
        shards: u32,
    },
    /// Make this host a member of a federation from the list of every member: writes its node
    /// config (keeping its keypair) and its nats-server config exactly as the deployer would,
    /// each only when it changed; prints what changed. Engine passwords come from the
    /// environment: CAIRN_ENGINE_PASSWORD, CAIRN_ROUTE_PASSWORD (CAIRN_ENGINE_USER, default
    /// cairn). Used by ansible/ (roles/node)
    Federate(FederateArgs),
    /// Start a federation on loopback: N nats-servers (JetStream cluster, authenticated) and
    /// N nodes, each with its own config, data and logs under --dir; Ctrl-C stops everything
    DevCluster(DevClusterArgs),
}

#[derive(clap::Args)]
struct FederateArgs {
    /// JSON list of every member in index order: [{"host": "10.0.0.4", "public_key": "<base58>"}, ...]
    /// (host: the address the other members reach it at)
    #[arg(long, value_name = "FILE")]
    members: PathBuf,
    /// This member's index in the list (its public key must be this config's)
    #[arg(long)]
    index: usize,
    /// Address clients reach this member's websocket at [default: its host in the list]
    #[arg(long)]
    advertised_host: Option<String>,
    /// The monitor host's address: StatsD goes to HOST:8125
    #[arg(long)]
    statsd_host: Option<String>,
    /// Where to write this member's nats-server config (0600)
    #[arg(long, default_value = "/etc/cairn/nats.conf")]
    nats_config: PathBuf,
}

#[derive(clap::Args)]
struct DevClusterArgs {
    /// Number of nodes (each with its own nats-server)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    nodes: u16,
    /// Working directory for configs, data and logs (kept after exit, for inspection)
    #[arg(long, default_value = "dev-cluster")]
    dir: PathBuf,
    /// Node i listens on BASE+10i (API), +1 (websocket), +2 (nats client), +3 (nats cluster)
    #[arg(long, default_value_t = 9984)]
    base_port: u16,
    /// Start from empty data directories (deletes --dir first)
    #[arg(long)]
    fresh: bool,
    /// nats-server binary [default: $CAIRN_NATS_SERVER, PATH, ./.venv/bin/nats-server]
    #[arg(long)]
    nats_server: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StartArgs {
    /// HTTP API address [config: server.bind, default 127.0.0.1:9984]
    #[arg(long)]
    bind: Option<String>,
    /// Websocket address [config: wsserver.bind, default 127.0.0.1:9985]
    #[arg(long)]
    ws_bind: Option<String>,
    /// Database directory [config: database.path]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Comma-separated public keys of the other nodes [config: keyring]
    #[arg(long, value_delimiter = ',')]
    keyring: Option<Vec<String>>,
}

fn ask(prompt: &str, default: &str) -> Result<String> {
    print!("{prompt} [{default}]: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim();
    Ok(if line.is_empty() { default.to_string() } else { line.to_string() })
}

fn confirm(prompt: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{prompt}: refusing to ask on a non-interactive input; pass -y to confirm");
    }
    Ok(matches!(ask(&format!("{prompt} (y/N)"), "n")?.to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn configure(path: &std::path::Path, yes: bool) -> Result<()> {
    let mut cfg = if path.exists() { Config::read(path)? } else { Config::default() };
    if cfg.keypair.private.is_empty() {
        let kp = Keypair::generate();
        cfg.keypair.private = kp.private_b58();
        cfg.keypair.public = kp.public_b58;
    } else {
        eprintln!("{} exists: keeping its keypair ({})", path.display(), cfg.keypair.public);
    }
    if !yes {
        cfg.server.bind = ask("API server bind address", &cfg.server.bind)?;
        cfg.wsserver.bind = ask("Websocket server bind address", &cfg.wsserver.bind)?;
        cfg.wsserver.advertised_host = ask("Websocket host advertised to clients", &cfg.wsserver.advertised_host)?;
        cfg.database.path = PathBuf::from(ask("Database directory", &cfg.database.path.display().to_string())?);
        cfg.statsd.host = ask("StatsD host", &cfg.statsd.host)?;
        cfg.statsd.port = ask("StatsD port", &cfg.statsd.port.to_string())?.parse().context("StatsD port must be a number")?;
    }
    cfg.validate()?;
    cfg.write(path)?;
    println!("Configuration written to {} (mode 0600; it holds the private key)", path.display());
    println!("Public key: {}", cfg.keypair.public);
    Ok(())
}

fn db_path(cfg: &Config) -> PathBuf {
    cairn::store::Store::path_in(&cfg.database.path)
}

async fn start(mut cfg: Config, args: StartArgs) -> Result<()> {
    if let Some(b) = args.bind { cfg.server.bind = b }
    if let Some(b) = args.ws_bind { cfg.wsserver.bind = b }
    if let Some(d) = args.data_dir { cfg.database.path = d }
    if let Some(k) = args.keyring { cfg.keyring = k }
    let api_listener = tokio::net::TcpListener::bind(&cfg.server.bind).await
        .with_context(|| format!("cannot listen on {} for the HTTP API: is another node running? pick another address with --bind", cfg.server.bind))?;
    let ws_listener = tokio::net::TcpListener::bind(&cfg.wsserver.bind).await
        .with_context(|| format!("cannot listen on {} for the websocket stream: pick another address with --ws-bind", cfg.wsserver.bind))?;
    // Node::start blocks (the JetStream engine runs its own runtime): keep it off this one.
    let node = tokio::task::spawn_blocking(move || cairn::node::Node::start(cfg, cairn::validation::Validator::new())).await??;
    tracing::info!(
        api = %api_listener.local_addr()?, ws = %ws_listener.local_addr()?, public_key = %node.key.public_b58,
        data = %node.config.database.path.display(), "Cairn node started"
    );
    // Stops on Ctrl-C or SIGTERM, or when the local store can no longer write (a full disk):
    // then the node exits non-zero with what to do, rather than answering 503 until someone
    // notices; a restart recovers everything acknowledged.
    let store_failed = {
        let node = node.clone();
        async move {
            loop {
                if let Some(why) = node.store.failure() {
                    return why.to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        let failed = tokio::select! { _ = tokio::signal::ctrl_c() => None, _ = term.recv() => None, why = store_failed => Some(why) };
        match &failed {
            None => tracing::info!("shutting down"),
            // The whole message ends the log once, as the exit error.
            Some(_) => tracing::error!("stopping: the local store can no longer write"),
        }
        failed
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx2 = stop_rx.clone();
    let api = axum::serve(api_listener, cairn::api::router(node.clone()))
        .with_graceful_shutdown(async move { let mut r = stop_rx; let _ = r.changed().await; });
    let ws = axum::serve(ws_listener, cairn::api::ws_router(node.clone()))
        .with_graceful_shutdown(async move { let _ = rx2.changed().await; });
    let servers = tokio::spawn(async move { tokio::try_join!(async { api.await }, async { ws.await }) });
    let failed = shutdown.await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), servers).await;
    let n = node.clone();
    tokio::task::spawn_blocking(move || n.shutdown()).await?;
    match failed {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `cairn federate`: this member's configs from the member list, written only when changed.
fn federate(path: &std::path::Path, a: FederateArgs) -> Result<()> {
    use cairn::federation::{self, Member, Ports, Secrets};
    #[derive(serde::Deserialize)]
    struct Entry {
        host: String,
        public_key: String,
    }
    let text = std::fs::read_to_string(&a.members).with_context(|| format!("reading the member list {}", a.members.display()))?;
    let entries: Vec<Entry> = serde_json::from_str(&text).with_context(|| format!("{}: expected [{{\"host\": ..., \"public_key\": ...}}, ...]", a.members.display()))?;
    let Some(me) = entries.get(a.index) else {
        anyhow::bail!("--index {} is past the {} members listed in {}", a.index, entries.len(), a.members.display());
    };
    if !path.exists() {
        anyhow::bail!("{} does not exist: run `cairn configure -y` first (it makes this member's keypair)", path.display());
    }
    let existing = Config::read(path)?;
    if existing.keypair.public != me.public_key {
        anyhow::bail!(
            "{} lists {} for member {} but this host's key is {}: collect the members' keys again (cairn export-my-pubkey)",
            a.members.display(),
            me.public_key,
            a.index,
            existing.keypair.public
        );
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(password), Some(route_password)) = (env("CAIRN_ENGINE_PASSWORD"), env("CAIRN_ROUTE_PASSWORD")) else {
        anyhow::bail!("set CAIRN_ENGINE_PASSWORD and CAIRN_ROUTE_PASSWORD (the engine's client and route passwords, the same on every member; from Ansible Vault or the environment)");
    };
    let secrets = Secrets { user: env("CAIRN_ENGINE_USER").unwrap_or_else(|| "cairn".into()), password, route_password };
    let members: Vec<Member> =
        entries.iter().map(|e| Member { host: e.host.clone(), bind: "0.0.0.0".into(), ports: Ports::STANDARD, public_key: e.public_key.clone() }).collect();
    let mut fed = federation::node_config(a.index, &members, &secrets, std::path::Path::new(federation::HOST_DATA_DIR), &federation::host_base(a.statsd_host.as_deref()));
    fed.wsserver.advertised_host = a.advertised_host.unwrap_or_else(|| me.host.clone());
    let merged = federation::merge_keeping_keypair(Some(existing), fed)?;
    let mut changed = Vec::new();
    let before = std::fs::read_to_string(path).unwrap_or_default();
    if toml::to_string_pretty(&merged)? != before {
        merged.write(path)?;
        changed.push(path.display().to_string());
    }
    let nats = federation::nats_config(a.index, &members, &secrets, std::path::Path::new(federation::HOST_NATS_DIR));
    if std::fs::read_to_string(&a.nats_config).ok().as_deref() != Some(nats.as_str()) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = a.nats_config.with_extension("conf.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(nats.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &a.nats_config).with_context(|| format!("writing {}", a.nats_config.display()))?;
        changed.push(a.nats_config.display().to_string());
    }
    if changed.is_empty() {
        println!("unchanged");
    } else {
        println!("changed: {}", changed.join(" "));
    }
    Ok(())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let path = cli.config.unwrap_or_else(config::default_path);
    match cli.cmd {
        Cmd::Configure { federation: Some(file), .. } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading the federation settings {}", file.display()))?;
            let fed: Config = toml::from_str(&text).with_context(|| format!("{} is not a cairn config (TOML)", file.display()))?;
            let existing = if path.exists() { Some(Config::read(&path)?) } else { None };
            let cfg = cairn::federation::merge_keeping_keypair(existing, fed)?;
            cfg.write(&path)?;
            println!("Configuration written to {} (mode 0600): {} keyring members, engine {}", path.display(), cfg.keyring.len(), cfg.database.servers.join(","));
            println!("Public key: {}", cfg.keypair.public);
            Ok(())
        }
        Cmd::Configure { yes, federation: None } => configure(&path, yes),
        Cmd::Federate(a) => federate(&path, a),
        Cmd::ShowConfig => {
            let cfg = Config::load(&path)?;
            println!("# effective configuration (file: {}{})", path.display(), if path.exists() { "" } else { ", missing: defaults shown" });
            print!("{}", cfg.redacted_toml());
            Ok(())
        }
        Cmd::ExportMyPubkey => {
            let cfg = Config::load(&path)?;
            if cfg.keypair.public.is_empty() {
                bail!("no keypair configured in {}: run `cairn configure -y` first", path.display());
            }
            println!("{}", cfg.keypair.public);
            Ok(())
        }
        Cmd::Init => {
            let cfg = Config::load(&path)?;
            let db = db_path(&cfg);
            if db.exists() {
                bail!("database {} already exists: `cairn drop` it first to start over", db.display());
            }
            cairn::store::Store::open(&db)?;
            println!("Created database {}", db.display());
            Ok(())
        }
        Cmd::Drop { yes } => {
            let cfg = Config::load(&path)?;
            let db = db_path(&cfg);
            if !db.exists() {
                println!("No database at {}: nothing to drop", db.display());
                return Ok(());
            }
            if !yes && !confirm(&format!("Delete the database {} and every transaction in it?", db.display()))? {
                println!("Not dropped.");
                return Ok(());
            }
            std::fs::remove_dir_all(&db).with_context(|| format!("deleting {}", db.display()))?;
            println!("Dropped database {}", db.display());
            Ok(())
        }
        Cmd::Start(args) => {
            let cfg = Config::load(&path)?;
            match raise_open_file_limit() {
                Ok((_, now)) if now < FEW_OPEN_FILES => tracing::warn!(
                    open_files = now,
                    "this process may open only {now} files (client connections and database tables): raise the hard limit (`ulimit -Hn 65536` as root, or LimitNOFILE in the systemd unit)"
                ),
                Ok((before, now)) if now > before => tracing::info!(open_files = now, "open-file limit raised from {before} to the hard limit {now}"),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot read or raise the open-file limit: {e}"),
            }
            tokio::runtime::Runtime::new()?.block_on(start(cfg, args))
        }
        Cmd::SetReplicas { replicas } => {
            let cfg = jetstream_config(&path)?;
            let r = tokio::runtime::Runtime::new()?.block_on(cairn::engine::set_replicas(&cfg.database, replicas))?;
            println!("Every Cairn stream now has {r} replica(s){}", if r < replicas { " (capped by the number of servers)" } else { "" });
            Ok(())
        }
        Cmd::SetShards { shards } => {
            let cfg = jetstream_config(&path)?;
            let n = tokio::runtime::Runtime::new()?.block_on(cairn::engine::set_shards(&cfg.database, shards))?;
            println!("The engine has {n} backlog partition(s); restart every node to use them");
            Ok(())
        }
        Cmd::DevCluster(args) => dev_cluster(args),
    }
}

fn jetstream_config(path: &std::path::Path) -> Result<Config> {
    let cfg = Config::load(path)?;
    if cfg.database.backend != "jetstream" {
        bail!("this command changes a JetStream engine, but {} uses database.backend = {:?}: set it to \"jetstream\" with database.servers", path.display(), cfg.database.backend);
    }
    cfg.validate()?;
    Ok(cfg)
}

fn dev_cluster(args: DevClusterArgs) -> Result<()> {
    use cairn::devcluster::{find_nats_server, DevCluster, Spec};
    let nats_server = match args.nats_server {
        Some(p) => p,
        None => find_nats_server(&[PathBuf::from(".venv/bin/nats-server")])?,
    };
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("deleting {}", args.dir.display()))?;
    }
    if args.dir.join("node0").exists() {
        bail!("{} holds an earlier dev cluster: pass --fresh to delete it, or pick another --dir", args.dir.display());
    }
    let n = args.nodes as usize;
    if args.base_port as usize + 10 * n > u16::MAX as usize {
        bail!("--base-port {} leaves no room for {n} nodes (10 ports each)", args.base_port);
    }
    eprintln!("starting {n} nats-server(s) and {n} node(s) under {} ...", args.dir.display());
    let spec = Spec { nodes: n, dir: args.dir, cairn: std::env::current_exe()?, nats_server, base_port: Some(args.base_port), env: vec![], start_nodes: true };
    let cluster = DevCluster::start(spec)?;
    println!("Federation of {n} running (engine: NATS JetStream, replicas {}):", n.min(3));
    for i in 0..n {
        let p = cluster.ports[i];
        println!("  node {i}: {}  ws://127.0.0.1:{}  nats://127.0.0.1:{}  {}", cluster.api(i), p.ws, p.nats, cluster.member_dir(i).display());
    }
    println!("Logs: <dir>/nodeN/node.log and nats.log. Press Ctrl-C to stop everything.");
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        anyhow::Ok(())
    })?;
    eprintln!("stopping nodes and servers ...");
    drop(cluster);
    eprintln!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }

    /// Guards the enum index against a mimalloc upgrade: option 15 must be the purge delay,
    /// recognised by its default (1,000 ms in mimalloc v3; no other option nearby has it).
    #[test]
    fn option_15_is_mimallocs_purge_delay() {
        // SAFETY: reads a process-wide allocator option.
        let (delay, next) = unsafe { (mi_option_get(super::MI_OPTION_PURGE_DELAY), mi_option_get(super::MI_OPTION_PURGE_DELAY + 1)) };
        assert_eq!(delay, 1000, "mimalloc option 15 is not purge_delay (default 1000 ms): check mimalloc.h's mi_option_e");
        assert_eq!(next, 0, "option 16 should be use_numa_nodes (default 0)");
    }
}
