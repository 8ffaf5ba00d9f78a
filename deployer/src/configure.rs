//! Configuring provisioned hosts into a working federation over SSH, all hosts in parallel:
//! install the `cairn` binary and a pinned nats-server (checked by SHA-256, skipped when
//! equal), generate each node's keypair on the node (`cairn configure -y`; only public keys
//! travel), give every node the keyring of all others and every nats-server routes to all
//! others (federation configs rendered by `cairn::federation`, the code `cairn dev-cluster`
//! uses), install systemd units (checked with `systemd-analyze verify`), start them, and prove
//! the federation works: every node answers with the same keyring, and a smoke transaction
//! posted to node 0 is VALID on every node. Re-running changes nothing that is already right.

use crate::cluster::{self, Cluster, Dir, Host};
use crate::progress::Progress;
use crate::ssh::{Access, Remote};
use anyhow::{anyhow, bail, Context, Result};
use cairn::config::Config;
use cairn::federation::{self, Member, Ports, Secrets};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where things live on a host.
pub const BIN_DIR: &str = "/opt/cairn/bin";
/// The node's config (0600, owner cairn: it holds the private key and the engine password).
pub const CONFIG: &str = "/etc/cairn/config.toml";
/// The nats-server config (0600: passwords).
pub const NATS_CONFIG: &str = "/etc/cairn/nats.conf";
/// The node's database.
pub const DATA_DIR: &str = "/var/lib/cairn/data";
/// JetStream's store.
pub const NATS_DIR: &str = "/var/lib/cairn/nats";
/// systemd units.
pub const UNITS: [&str; 2] = ["cairn-nats.service", "cairn-node.service"];

/// What to install and how hard to push.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `cairn` binary for x86_64 hosts.
    pub cairn_binary: PathBuf,
    /// The nats-server binary for x86_64 hosts.
    pub nats_server: PathBuf,
    /// `cairn` and nats-server for aarch64 hosts, when given.
    pub aarch64: Option<(PathBuf, PathBuf)>,
    /// Hosts configured at once.
    pub concurrency: usize,
    /// How long to keep trying to connect to a host.
    pub ssh_timeout: Duration,
    /// How long the health check waits for the smoke transaction.
    pub health_timeout: Duration,
}

/// The federation's engine credentials, kept 0600 beside the cluster file (never in it).
pub fn secrets(dir: &Dir) -> Result<Secrets> {
    let path = dir.join("engine.secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: Vec<&str> = text.lines().collect();
        if v.len() == 3 {
            return Ok(Secrets { user: v[0].into(), password: v[1].into(), route_password: v[2].into() });
        }
        bail!("{} is malformed (3 lines: user, password, route password): delete it and run `deployer reset` to form the engine anew", path.display());
    }
    let s = Secrets::generate();
    std::fs::create_dir_all(&dir.path)?;
    cluster::write_atomic(&path, format!("{}\n{}\n{}\n", s.user, s.password, s.route_password).as_bytes(), 0o600)?;
    Ok(s)
}

/// The systemd unit of the engine server.
pub fn nats_unit() -> String {
    format!(
        "[Unit]\nDescription=Cairn engine: NATS JetStream server\nWants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nUser=cairn\nGroup=cairn\nExecStart={BIN_DIR}/nats-server --config {NATS_CONFIG}\nRestart=always\nRestartSec=2\n\
         LimitNOFILE=1048576\nNoNewPrivileges=yes\nProtectSystem=full\nProtectHome=yes\nPrivateTmp=yes\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// The systemd unit of the node.
pub fn node_unit() -> String {
    format!(
        "[Unit]\nDescription=Cairn node\nWants=network-online.target cairn-nats.service\nAfter=network-online.target cairn-nats.service\n\n\
         [Service]\nUser=cairn\nGroup=cairn\nEnvironment=RUST_LOG=info\nExecStart={BIN_DIR}/cairn --config {CONFIG} start\nRestart=always\nRestartSec=2\n\
         LimitNOFILE=1048576\nNoNewPrivileges=yes\nProtectSystem=full\nProtectHome=yes\nPrivateTmp=yes\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// What happened on one host.
struct Outcome {
    index: usize,
    public_key: String,
    changed: Vec<String>,
}

/// The binaries to install, per host architecture (`uname -m`).
type Binaries = std::collections::BTreeMap<&'static str, Vec<(String, Arc<Vec<u8>>)>>;

/// Step 1 on a host: user, directories, binaries, keypair. Returns its public key.
async fn install(r: &Remote, all: &Binaries, changed: &mut Vec<String>) -> Result<String> {
    let arch = r.run("uname -m").await?;
    let Some(bins) = all.get(arch.trim()) else {
        bail!(
            "{} is {} but binaries were given for {}: pass --cairn-binary-aarch64 and --nats-server-aarch64 (or x86_64 builds with --cairn-binary/--nats-server)",
            r.label,
            arch.trim(),
            all.keys().copied().collect::<Vec<_>>().join(", ")
        );
    };
    r.run(&format!(
        "id -u cairn >/dev/null 2>&1 || useradd --system --home-dir /var/lib/cairn --shell /usr/sbin/nologin cairn; \
         mkdir -p {BIN_DIR} /etc/cairn {DATA_DIR} {NATS_DIR} && chown -R cairn:cairn /var/lib/cairn /etc/cairn && chmod 700 /var/lib/cairn /etc/cairn"
    ))
    .await?;
    for (name, bytes) in bins {
        if r.put(&format!("{BIN_DIR}/{name}"), bytes, 0o755, "root:root").await? {
            changed.push(name.clone());
        }
    }
    let key = r
        .run(&format!(
            "[ -f {CONFIG} ] || {BIN_DIR}/cairn --config {CONFIG} configure -y >/dev/null; chown cairn:cairn {CONFIG}; {BIN_DIR}/cairn --config {CONFIG} export-my-pubkey"
        ))
        .await?;
    let key = key.trim().to_string();
    if key.is_empty() {
        bail!("{}: `cairn export-my-pubkey` printed nothing", r.label);
    }
    Ok(key)
}

/// Step 2 on a host: its federation config and nats.conf, the units; returns what changed.
async fn apply(r: &Remote, node_toml: &str, nats_conf: &str, changed: &mut Vec<String>) -> Result<()> {
    let before = r.sha256(CONFIG).await?;
    r.put("/etc/cairn/federation.toml", node_toml.as_bytes(), 0o600, "cairn:cairn").await?;
    r.run(&format!("{BIN_DIR}/cairn --config {CONFIG} configure --federation /etc/cairn/federation.toml >/dev/null && rm -f /etc/cairn/federation.toml && chown cairn:cairn {CONFIG}"))
        .await?;
    if r.sha256(CONFIG).await? != before {
        changed.push("config.toml".into());
    }
    if r.put(NATS_CONFIG, nats_conf.as_bytes(), 0o600, "cairn:cairn").await? {
        changed.push("nats.conf".into());
    }
    let mut units_changed = false;
    for (unit, text) in [(UNITS[0], nats_unit()), (UNITS[1], node_unit())] {
        if r.put(&format!("/etc/systemd/system/{unit}"), text.as_bytes(), 0o644, "root:root").await? {
            units_changed = true;
            changed.push(unit.into());
        }
    }
    let units: Vec<String> = UNITS.iter().map(|u| format!("/etc/systemd/system/{u}")).collect();
    let (code, _, err) = r.run_status(&format!("systemd-analyze verify {}", units.join(" "))).await?;
    if code != 0 || !err.trim().is_empty() {
        bail!("{}: systemd-analyze verify rejected the units: {}", r.label, err.trim());
    }
    if units_changed {
        r.run("systemctl daemon-reload >/dev/null 2>&1").await?;
    }
    Ok(())
}

/// How many times a unit that exits right after starting is started again before its host is
/// named: the units say `Restart=always`, `RestartSec=2`, so systemd would retry it too.
const START_ATTEMPTS: u32 = 3;
/// The units' `RestartSec` (written as 2 in `nats_unit` and `node_unit`, which the Ansible
/// templates are checked against): how long `up` waits before starting a unit again.
const RESTART_SEC: u64 = 2;

/// Starts (or restarts, when its inputs changed) one unit on a host and checks it stays up. A
/// unit that exits at once is started again 2 s later (what its `Restart=always` does), with
/// its log lines printed, so a transient failure is visible but does not fail `up`.
async fn start(r: &Remote, unit: &str, restart: bool, p: &Progress) -> Result<()> {
    let mut verb = if restart { "restart" } else { "start" };
    let mut attempt = 1;
    loop {
        let (code, _, err) = r.run_status(&format!("systemctl enable {unit} >/dev/null 2>&1; systemctl {verb} {unit}")).await?;
        let why = if code != 0 {
            format!("`systemctl {verb} {unit}` failed (exit {code}): {}", err.trim())
        } else {
            let (code, state, _) = r.run_status(&format!("systemctl is-active {unit}")).await?;
            if code == 0 {
                return Ok(());
            }
            format!("{unit} is {} after starting", state.trim())
        };
        let (_, logs, _) = r.run_status(&format!("journalctl -u {unit} -n 20 --no-pager 2>&1 | tail -20")).await?;
        if attempt == START_ATTEMPTS {
            bail!("{}: {why} ({attempt} attempts, {RESTART_SEC} s apart); last log lines:\n{}", r.label, logs.trim());
        }
        p.say(&format!("{}: {why}; starting it again in {RESTART_SEC} s (attempt {}/{START_ATTEMPTS}); last log lines:\n{}", r.label, attempt + 1, logs.trim()));
        tokio::time::sleep(Duration::from_secs(RESTART_SEC)).await;
        verb = "restart";
        attempt += 1;
    }
}

/// Configures every node host of `rec` into one federation and checks it; updates the record.
pub async fn configure(dir: &Dir, rec: &mut Cluster, opts: &Options, p: &Progress) -> Result<()> {
    let all = rec.nodes.iter().filter(|h| h.role == "node").count();
    configure_members(dir, rec, opts, p, all).await?;
    let access = Access::new(dir, rec, opts.ssh_timeout)?;
    crate::monitor::configure(dir, rec, &access, p).await
}

/// Configures the first `members` node hosts into one federation and checks it (the others
/// are left as they are: stopped after a reset); updates the record.
pub async fn configure_members(dir: &Dir, rec: &mut Cluster, opts: &Options, p: &Progress, count: usize) -> Result<()> {
    let secrets = secrets(dir)?;
    let access = Arc::new(Access::new(dir, rec, opts.ssh_timeout)?);
    let nodes: Vec<Host> = rec.nodes.iter().filter(|h| h.role == "node" && h.index < count).cloned().collect();
    if nodes.is_empty() {
        bail!("cluster {} has no node hosts: run `deployer up --name {}`", rec.name, rec.name);
    }
    let read = |p: &Path, what: &str| -> Result<Arc<Vec<u8>>> {
        Ok(Arc::new(std::fs::read(p).with_context(|| format!("reading the {what} binary {} (pass --{what} PATH)", p.display()))?))
    };
    let mut binaries = Binaries::new();
    binaries.insert("x86_64", vec![("cairn".to_string(), read(&opts.cairn_binary, "cairn-binary")?), ("nats-server".to_string(), read(&opts.nats_server, "nats-server")?)]);
    if let Some((c, n)) = &opts.aarch64 {
        binaries.insert("aarch64", vec![("cairn".to_string(), read(c, "cairn-binary-aarch64")?), ("nats-server".to_string(), read(n, "nats-server-aarch64")?)]);
    }
    let bins = Arc::new(binaries);

    // Connect and install everywhere in parallel, at most `concurrency` hosts at once.
    let limit = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let mut phase = p.phase("connect, install, keys", nodes.len() as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for h in nodes.clone() {
        let (access, bins, limit) = (access.clone(), bins.clone(), limit.clone());
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await.expect("semaphore");
            let r = access.connect(&h).await?;
            let mut changed = Vec::new();
            let key = install(&r, &bins, &mut changed).await;
            let key = match key {
                Ok(k) => k,
                Err(e) => {
                    r.close().await;
                    return Err(e);
                }
            };
            Ok::<_, anyhow::Error>((Outcome { index: h.index, public_key: key, changed }, r))
        });
    }
    let mut remotes: Vec<(Outcome, Remote)> = Vec::new();
    let mut failures = Vec::new();
    while let Some(res) = tasks.join_next().await {
        match res.map_err(|e| anyhow!("task failed: {e}")).and_then(|r| r) {
            Ok((o, r)) => {
                phase.step(&format!("node {} {}", o.index, if o.changed.is_empty() { "up to date".to_string() } else { format!("installed {}", o.changed.join(", ")) }));
                remotes.push((o, r));
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    phase.finish();
    if !failures.is_empty() {
        for (_, r) in remotes {
            r.close().await;
        }
        failures.sort();
        bail!("{} of {} hosts could not be prepared:\n  {}", failures.len(), nodes.len(), failures.join("\n  "));
    }
    remotes.sort_by_key(|(o, _)| o.index);

    // Every member as the others see it (private addresses: the engine stays inside the VPC).
    let members: Vec<Member> = remotes
        .iter()
        .map(|(o, _)| {
            let h = nodes.iter().find(|h| h.index == o.index).expect("host");
            Member { host: h.private_ip.clone().unwrap_or_default(), bind: "0.0.0.0".into(), ports: Ports::STANDARD, public_key: o.public_key.clone() }
        })
        .collect();
    // Every node's StatsD goes to the monitor host's Telegraf, inside the VPC.
    let monitor_ip = crate::monitor::host(rec).and_then(|m| m.private_ip.clone());
    let base = federation::host_base(monitor_ip.as_deref());
    let mut phase = p.phase("federation configs, units", remotes.len() as u64);
    let results = futures_util::future::join_all(remotes.iter_mut().enumerate().map(|(i, (o, r))| {
        let mut c = federation::node_config(i, &members, &secrets, Path::new(DATA_DIR), &base);
        c.wsserver.advertised_host = r.addr.clone();
        let node_toml = toml_of(&c);
        let nats = federation::nats_config(i, &members, &secrets, Path::new(NATS_DIR));
        async move { apply(r, &node_toml, &nats, &mut o.changed).await }
    }))
    .await;
    for ((o, _), res) in remotes.iter().zip(&results) {
        if res.is_ok() {
            phase.step(&format!("node {}", o.index));
        }
    }
    phase.finish();
    collect_errors(results, "could not be configured")?;

    // Engines first (the JetStream cluster forms), then the nodes.
    let mut phase = p.phase("start engines, then nodes", 2 * remotes.len() as u64);
    // A unit is restarted only when something it runs from changed.
    let plan: [(&str, &str, [&str; 3]); 2] = [(UNITS[0], "engine running", ["nats-server", "nats.conf", UNITS[0]]), (UNITS[1], "running", ["cairn", "config.toml", UNITS[1]])];
    for (unit, done, inputs) in plan {
        let results = futures_util::future::join_all(remotes.iter().map(|(o, r)| {
            let restart = o.changed.iter().any(|c| inputs.contains(&c.as_str()));
            async move { start(r, unit, restart, p).await }
        }))
        .await;
        collect_errors(results, &format!("could not start {unit}"))?;
        for (o, _) in &remotes {
            phase.step(&format!("node {} {done}", o.index));
        }
    }
    phase.finish();

    let changed: Vec<String> = remotes.iter().filter(|(o, _)| !o.changed.is_empty()).map(|(o, _)| format!("node {}: {}", o.index, o.changed.join(", "))).collect();
    p.say(&if changed.is_empty() { "every host was already configured: nothing changed".to_string() } else { format!("changed: {}", changed.join("; ")) });

    // Record what is now true, then prove it works.
    for (o, r) in &remotes {
        if let Some(h) = rec.host_mut("node", o.index) {
            h.public_key = Some(o.public_key.clone());
            h.api = Some(format!("http://{}:{}", r.addr, Ports::STANDARD.api));
            h.ws = Some(format!("ws://{}:{}/api/v1/streams/valid_transactions", r.addr, Ports::STANDARD.ws));
            h.nats = Some(format!("nats://{}:{}", h.private_ip.as_deref().unwrap_or(""), Ports::STANDARD.nats));
            h.state = "configured".into();
        }
    }
    dir.save(rec)?;
    for (_, r) in remotes {
        r.close().await;
    }
    health(rec, count, opts.health_timeout, p).await?;
    for h in rec.nodes.iter_mut().filter(|h| h.role == "node") {
        h.state = if h.index < count { "running".into() } else { "standby".into() };
    }
    dir.save(rec)?;
    crate::inventory::write(dir, rec)?;
    Ok(())
}

fn toml_of(c: &Config) -> String {
    // A config always serializes (the node writes it the same way).
    match toml::to_string_pretty(c) {
        Ok(s) => s,
        Err(e) => panic!("config serializes: {e}"),
    }
}

fn collect_errors(results: Vec<Result<()>>, what: &str) -> Result<()> {
    let errors: Vec<String> = results.into_iter().filter_map(|r| r.err()).map(|e| format!("{e:#}")).collect();
    if errors.is_empty() {
        return Ok(());
    }
    bail!("{} host(s) {what}:\n  {}", errors.len(), errors.join("\n  "))
}

fn get(url: &str) -> Result<(u16, Value)> {
    match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => Ok((r.status(), r.into_json().unwrap_or(Value::Null))),
        Err(ureq::Error::Status(s, r)) => Ok((s, r.into_json().unwrap_or(Value::Null))),
        Err(e) => Err(anyhow!("{url}: {e}")),
    }
}

/// Every member (the first `members` nodes) answers `GET /` with the keyring of all the
/// others; a CREATE posted to node 0 is VALID on every member within `timeout`.
pub async fn health(rec: &Cluster, members: usize, timeout: Duration, p: &Progress) -> Result<()> {
    health_watching(rec, members, timeout, p, Box::new(|| Ok(()))).await
}

/// A check run while waiting for the nodes: an error (a member process that died, with its
/// log) ends the wait at once instead of at the timeout.
pub type Watch = Box<dyn Fn() -> Result<()> + Send>;

/// [`health`], calling `watch` between attempts.
pub async fn health_watching(rec: &Cluster, members: usize, timeout: Duration, p: &Progress, watch: Watch) -> Result<()> {
    let nodes: Vec<Host> = rec.nodes.iter().filter(|h| h.role == "node" && h.index < members).cloned().collect();
    let keys: Vec<String> = nodes.iter().map(|h| h.public_key.clone().unwrap_or_default()).collect();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        for (h, key) in nodes.iter().zip(&keys) {
            let api = h.api.clone().unwrap_or_default();
            loop {
                match get(&format!("{api}/")) {
                    Ok((200, v)) => {
                        let mut ring: Vec<String> = v["keyring"].as_array().map(|a| a.iter().filter_map(|k| k.as_str().map(String::from)).collect()).unwrap_or_default();
                        ring.sort();
                        let mut want: Vec<String> = keys.iter().filter(|k| *k != key).cloned().collect();
                        want.sort();
                        if v["public_key"] != key.as_str() || ring != want {
                            bail!("node {} ({api}) answers with public key {} and keyring {:?}, expected {key} and {:?}", h.index, v["public_key"], ring, want);
                        }
                        break;
                    }
                    other if std::time::Instant::now() > deadline => {
                        bail!("node {} ({api}) did not answer GET / with 200 within {}s ({:?}); `deployer logs {}` shows why", h.index, timeout.as_secs(), other.map(|(s, _)| s), h.index)
                    }
                    _ => {
                        watch()?;
                        std::thread::sleep(Duration::from_millis(500))
                    }
                }
            }
        }
        // The smoke transaction.
        let k = cairn::crypto::Keypair::generate();
        let tx = cairn::tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], serde_json::json!({"deployer": "smoke test"}), Value::Null);
        let id = tx["id"].as_str().unwrap_or_default().to_string();
        let api0 = nodes[0].api.clone().unwrap_or_default();
        loop {
            match ureq::post(&format!("{api0}/api/v1/transactions?mode=async")).timeout(Duration::from_secs(30)).send_json(&tx) {
                Ok(r) if r.status() == 202 => break,
                Ok(r) => bail!("node 0 answered {} to the smoke transaction", r.status()),
                Err(ureq::Error::Status(503, _)) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
                Err(e) => bail!("node 0 refused the smoke transaction: {e}"),
            }
        }
        for h in &nodes {
            let api = h.api.clone().unwrap_or_default();
            loop {
                match get(&format!("{api}/api/v1/transactions/{id}")) {
                    Ok((200, _)) => break,
                    _ if std::time::Instant::now() > deadline => {
                        bail!("the smoke transaction {id} posted to node 0 is not VALID on node {} ({api}) after {}s: the engine may have no leader; `deployer logs {}`", h.index, timeout.as_secs(), h.index)
                    }
                    _ => std::thread::sleep(Duration::from_millis(300)),
                }
            }
        }
        Ok(())
    })
    .await??;
    p.say("health: every node has the full keyring; the smoke transaction posted to node 0 is VALID on every node");
    Ok(())
}
