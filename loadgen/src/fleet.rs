//! Fresh federations for sweep points, and the faults a schedule injects into them.
//! `--local`: one node with the embedded engine for N = 1 (a `cairn` process in the results
//! directory), and for N > 1 a local deployer cluster (`deployer up --provider local` once at
//! the largest N, `deployer reset --nodes N` per point). `--cluster FILE`: the deployer's
//! cluster, `deployer reset --nodes N` per point. Faults go through `deployer fault` (or
//! signals to the embedded node), so they act exactly as an operator's would.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A node of a formed federation.
#[derive(Debug, Clone)]
pub struct Member {
    /// API base URL.
    pub api: String,
    /// Websocket stream URL.
    pub ws: String,
}

/// Programs the fleet runs.
#[derive(Debug, Clone)]
pub struct Programs {
    /// `cairn`.
    pub cairn: PathBuf,
    /// `deployer`.
    pub deployer: PathBuf,
    /// `nats-server` passed to the deployer (None: the deployer's own default).
    pub nats_server: Option<PathBuf>,
}

impl Programs {
    /// The siblings of this executable (the workspace builds them side by side), or the given ones.
    pub fn find(cairn: Option<PathBuf>, deployer: Option<PathBuf>, nats_server: Option<PathBuf>) -> Result<Self> {
        let here = std::env::current_exe().context("locating loadgen's own executable")?;
        let sibling = |name: &str, given: Option<PathBuf>, flag: &str| -> Result<PathBuf> {
            let p = given.unwrap_or_else(|| here.with_file_name(name));
            if !p.is_file() {
                bail!("{} not found: build it (cargo build --release --workspace) or pass {flag} PATH", p.display());
            }
            Ok(p)
        };
        Ok(Programs { cairn: sibling("cairn", cairn, "--cairn-binary")?, deployer: sibling("deployer", deployer, "--deployer")?, nats_server })
    }
}

/// Where a sweep's federations come from.
pub enum Fleet {
    /// Formed on this machine under `dir`.
    Local {
        /// Programs.
        programs: Programs,
        /// Working directory (results dir / fleet).
        dir: PathBuf,
        /// The embedded single node, when running.
        single: Option<Child>,
        /// Its ports (api, ws), kept across fault restarts.
        single_ports: Option<(u16, u16)>,
        /// Size of the local deployer cluster once made.
        cluster_size: usize,
        /// Which kind is formed now.
        formed: usize,
    },
    /// A deployer cluster (`--cluster FILE`).
    Deployed {
        /// Programs (only `deployer` is used).
        programs: Programs,
        /// clusters directory.
        dir: PathBuf,
        /// Cluster name.
        name: String,
        /// Nodes the cluster has.
        size: usize,
    },
}

/// Runs a helper program (deployer, cairn); on failure the error carries its error lines.
/// Backtraces are turned off for it: with RUST_BACKTRACE set in the caller's environment, an
/// error's backtrace would otherwise bury the sentence that says what went wrong.
fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0").output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, error_lines(&String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last 15 lines of a program's stderr that are not part of a backtrace.
fn error_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().take_while(|l| !l.trim_start().to_ascii_lowercase().starts_with("stack backtrace:")).collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn free_port() -> Result<u16> {
    Ok(ledger::ports::free_loopback_port()?)
}

/// The running nodes (api, ws) of a deployer cluster file, in index order, and how many nodes it has.
pub fn cluster_members(file: &Path) -> Result<(Vec<Member>, usize)> {
    #[derive(serde::Deserialize)]
    struct Host {
        index: usize,
        role: String,
        api: Option<String>,
        ws: Option<String>,
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
    let size = f.nodes.iter().filter(|h| h.role == "node").count();
    let mut nodes: Vec<Host> = f.nodes.into_iter().filter(|h| h.role == "node" && h.state == "running" && h.api.is_some()).collect();
    nodes.sort_by_key(|h| h.index);
    let members = nodes
        .into_iter()
        .map(|h| {
            let api = h.api.unwrap_or_default().trim_end_matches('/').to_string();
            let ws = h.ws.unwrap_or_else(|| format!("{}/api/v1/streams/valid_transactions", api.replacen("http", "ws", 1)));
            Member { api, ws }
        })
        .collect();
    Ok((members, size))
}

fn wait_http(port: u16, child: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!("the local node exited ({st}) before answering; its log: {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the local node did not answer on port {port} within 60 s; its log: {}", log.display())
}

impl Fleet {
    /// A local fleet working under `dir`.
    pub fn local(programs: Programs, dir: PathBuf) -> Self {
        Fleet::Local { programs, dir, single: None, single_ports: None, cluster_size: 0, formed: 0 }
    }

    /// The deployer cluster whose file is `file`.
    pub fn deployed(programs: Programs, file: &Path) -> Result<Self> {
        let cdir = file.parent().context("the cluster file has no directory")?;
        let name = cdir.file_name().and_then(|n| n.to_str()).context("the cluster file's directory has no name")?.to_string();
        let dir = cdir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let (_, size) = cluster_members(file)?;
        Ok(Fleet::Deployed { programs, dir, name, size })
    }

    /// Nodes available (None: as many as asked, locally).
    pub fn capacity(&self) -> Option<usize> {
        match self {
            Fleet::Local { .. } => None,
            Fleet::Deployed { size, .. } => Some(*size),
        }
    }

    /// What a federation of `n` runs on (for the results).
    pub fn describe(&self, n: usize) -> String {
        match self {
            Fleet::Local { .. } if n == 1 => "one local node, embedded engine (backlog fsynced per group commit)".into(),
            Fleet::Local { .. } => format!("{n} local nodes, each with its own nats-server (JetStream, file storage, R = min(3, {n}))"),
            Fleet::Deployed { name, .. } => format!("{n} nodes of deployer cluster {name} (JetStream)"),
        }
    }

    /// `max` is the largest N of the sweep (a local cluster is made at that size once).
    pub fn form(&mut self, n: usize, max: usize) -> Result<Vec<Member>> {
        self.stop_single();
        match self {
            Fleet::Local { programs, dir, single, single_ports, cluster_size, formed } => {
                std::fs::create_dir_all(&*dir).with_context(|| format!("creating {}", dir.display()))?;
                let dir = std::fs::canonicalize(&*dir)?;
                *formed = n;
                if n == 1 {
                    if *cluster_size > 0 {
                        // Members of the local cluster would compete for the cores: park them.
                        let d = dir.display().to_string();
                        for i in 0..*cluster_size {
                            let _ = run(Command::new(&programs.deployer).args(["--dir", &d, "fault", &i.to_string(), "stop", "node", "--name", "sweep"]), "deployer fault stop");
                            let _ = run(Command::new(&programs.deployer).args(["--dir", &d, "fault", &i.to_string(), "stop", "engine", "--name", "sweep"]), "deployer fault stop");
                        }
                    }
                    let home = dir.join("single");
                    kill_stale(&home);
                    let _ = std::fs::remove_dir_all(&home);
                    std::fs::create_dir_all(&home)?;
                    let (api, ws) = (free_port()?, free_port()?);
                    let cfg = home.join("config.toml");
                    run(Command::new(&programs.cairn).args(["configure", "-y"]).env("CAIRN_CONFIG", &cfg), "cairn configure")?;
                    *single_ports = Some((api, ws));
                    *single = Some(spawn_single(&programs.cairn, &home, api, ws)?);
                    let log = home.join("node.log");
                    wait_http(api, single.as_mut().expect("spawned"), &log)?;
                    return Ok(vec![Member { api: format!("http://127.0.0.1:{api}"), ws: format!("ws://127.0.0.1:{ws}/api/v1/streams/valid_transactions") }]);
                }
                let d = dir.display().to_string();
                if *cluster_size < max.max(n) {
                    let size = max.max(n).to_string();
                    let mut up = Command::new(&programs.deployer);
                    up.args(["--dir", &d, "up", "--provider", "local", "--nodes", &size, "--name", "sweep", "--cairn-binary"]).arg(&programs.cairn);
                    if let Some(ns) = &programs.nats_server {
                        up.arg("--nats-server").arg(ns);
                    }
                    run(&mut up, "deployer up --provider local")?;
                    *cluster_size = max.max(n);
                }
                run(Command::new(&programs.deployer).args(["--dir", &d, "reset", "--nodes", &n.to_string(), "--name", "sweep"]), "deployer reset")?;
                Ok(cluster_members(&dir.join("sweep/cluster.yaml"))?.0)
            }
            Fleet::Deployed { programs, dir, name, size } => {
                if n > *size {
                    bail!("the cluster {name} has {size} nodes; a point of {n} needs `deployer up --nodes {n}` first");
                }
                let d = dir.display().to_string();
                run(Command::new(&programs.deployer).args(["--dir", &d, "reset", "--nodes", &n.to_string(), "--name", name]), "deployer reset")?;
                Ok(cluster_members(&dir.join(&*name).join("cluster.yaml"))?.0)
            }
        }
    }

    fn stop_single(&mut self) {
        if let Fleet::Local { single, .. } = self {
            if let Some(mut c) = single.take() {
                let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Injects `action` (kill, stop, start, pause, resume) on node `index`'s `target` (node or engine).
    pub fn fault(&mut self, index: usize, action: &str, target: &str) -> Result<()> {
        match self {
            Fleet::Local { formed: 1, single, single_ports, dir, programs, .. } => {
                if target == "engine" {
                    bail!("a single local node uses the embedded engine: there is no engine server to {action}");
                }
                if index != 0 {
                    bail!("node {index} does not exist in a federation of 1");
                }
                let sig = |c: &Child, s: &str| Command::new("kill").arg(format!("-{s}")).arg(c.id().to_string()).status().map(|_| ());
                match action {
                    "kill" | "stop" => {
                        if let Some(mut c) = single.take() {
                            sig(&c, if action == "kill" { "KILL" } else { "TERM" })?;
                            let _ = c.wait();
                        }
                    }
                    "pause" => sig(single.as_ref().context("the node is not running")?, "STOP")?,
                    "resume" => sig(single.as_ref().context("the node is not running")?, "CONT")?,
                    "start" => {
                        if single.is_none() {
                            let (api, ws) = single_ports.context("the node was never started")?;
                            let home = std::fs::canonicalize(&*dir)?.join("single");
                            let mut c = spawn_single(&programs.cairn, &home, api, ws)?;
                            wait_http(api, &mut c, &home.join("node.log"))?;
                            *single = Some(c);
                        }
                    }
                    other => bail!("unknown fault action {other}"),
                }
                Ok(())
            }
            Fleet::Local { programs, dir, .. } => {
                let d = std::fs::canonicalize(&*dir)?.display().to_string();
                run(Command::new(&programs.deployer).args(["--dir", &d, "fault", &index.to_string(), action, target, "--name", "sweep"]), "deployer fault").map(|_| ())
            }
            Fleet::Deployed { programs, dir, name, .. } => {
                let d = dir.display().to_string();
                run(Command::new(&programs.deployer).args(["--dir", &d, "fault", &index.to_string(), action, target, "--name", name]), "deployer fault").map(|_| ())
            }
        }
    }

    /// Stops and removes what this fleet started (a `--cluster` is left running).
    pub fn teardown(&mut self) -> Result<()> {
        self.stop_single();
        if let Fleet::Local { programs, dir, cluster_size, .. } = self {
            kill_stale(&dir.join("single"));
            // Also a cluster an interrupted earlier process made (resumed sweeps).
            if *cluster_size > 0 || dir.join("sweep/cluster.yaml").exists() {
                let d = std::fs::canonicalize(&*dir)?.display().to_string();
                run(Command::new(&programs.deployer).args(["--dir", &d, "down", "--name", "sweep"]), "deployer down")?;
                *cluster_size = 0;
            }
            let _ = std::fs::remove_dir_all(&*dir);
        }
        Ok(())
    }
}

impl Drop for Fleet {
    /// An interrupted sweep (Ctrl-C, SIGTERM, an error) removes what it started locally; a
    /// resume forms the federations again.
    fn drop(&mut self) {
        self.stop_single();
        if let Fleet::Local { dir, .. } = self {
            if dir.join("sweep/cluster.yaml").exists() {
                if let Err(e) = self.teardown() {
                    eprintln!("warning: removing the local federations failed: {e:#}");
                }
            }
        }
    }
}

/// Stops a single node an interrupted earlier loadgen left running (its pid file in `home`).
fn kill_stale(home: &Path) {
    let Some(pid) = std::fs::read_to_string(home.join("pid")).ok().and_then(|p| p.trim().parse::<u32>().ok()) else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(&*home.to_string_lossy()) {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    }
    let _ = std::fs::remove_file(home.join("pid"));
}

fn spawn_single(cairn: &Path, home: &Path, api: u16, ws: u16) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(home.join("node.log"))?;
    let child = Command::new(cairn)
        .args(["start", "--data-dir"])
        .arg(home.join("data"))
        .args(["--bind", &format!("127.0.0.1:{api}"), "--ws-bind", &format!("127.0.0.1:{ws}")])
        .env("CAIRN_CONFIG", home.join("config.toml"))
        .env("CAIRN_WSSERVER_ADVERTISED_PORT", ws.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", cairn.display()))?;
    std::fs::write(home.join("pid"), child.id().to_string())?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_lines_leave_the_backtrace_out() {
        let stderr = "progress\nError: node 1 did not answer\n\nStack backtrace:\n   0: anyhow::error\n   1: main\n";
        assert_eq!(super::error_lines(stderr), "progress\nError: node 1 did not answer\n");
    }
}
