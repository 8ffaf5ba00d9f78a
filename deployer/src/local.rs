//! `--provider local`: the same cluster file and commands with processes on this machine (no
//! EC2, no SSH): one nats-server and one `cairn` per member on loopback, each member's files
//! in `clusters/<name>/node<i>/` (config.toml 0600, nats.conf 0600, data, logs, pid files).
//! The federation is formed exactly as on hosts: `cairn configure -y` makes each member's
//! keypair, `cairn::federation` renders the configs (the code `cairn dev-cluster` uses), and
//! `cairn configure --federation` merges them in. Processes outlive the deployer; `down`
//! stops them and removes the directory.

use crate::cluster::{self, Cluster, Dir, Host, Network, Settings, Ssh, VERSION};
use crate::configure::{self, Options};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use cairn::config::Config;
use cairn::devcluster::free_port;
use cairn::federation::{self, Member, Ports};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn member_dir(dir: &Dir, i: usize) -> PathBuf {
    dir.join(&format!("node{i}"))
}

/// Ports recorded for member `i` (from its URLs), or new free ones.
fn ports_of(h: Option<&Host>) -> Result<Ports> {
    let port = |u: &Option<String>| u.as_deref().and_then(|u| u.rsplit(':').next()).and_then(|p| p.split('/').next()).and_then(|p| p.parse::<u16>().ok());
    if let Some(h) = h {
        if let (Some(api), Some(ws), Some(nats)) = (port(&h.api), port(&h.ws), port(&h.nats)) {
            if let Some(route) = h.instance_id.as_deref().and_then(|r| r.strip_prefix("local-route-")).and_then(|p| p.parse().ok()) {
                return Ok(Ports { api, ws, nats, route });
            }
        }
    }
    Ok(Ports { api: free_port()?, ws: free_port()?, nats: free_port()?, route: free_port()? })
}

fn pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(p: i32) -> bool {
    Path::new(&format!("/proc/{p}")).exists() && !std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default().contains(") Z ")
}

fn signal(p: i32, sig: &str) -> Result<()> {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(p.to_string()).status().context("running kill")?.success();
    if !ok {
        bail!("kill -{sig} {p} failed");
    }
    Ok(())
}

/// Starts `program args` detached (`setsid`: its own session, so it outlives the deployer
/// and its terminal), output appended to `log`, pid written to `pidfile` (setsid execs the
/// program in place, so the pid is the program's).
fn spawn(program: &Path, args: &[&str], log: &Path, pidfile: &Path) -> Result<()> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
    let child = Command::new("setsid")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("RUST_LOG", "info")
        .spawn()
        .with_context(|| format!("starting {} (through setsid)", program.display()))?;
    cluster::write_atomic(pidfile, child.id().to_string().as_bytes(), 0o644)
}

/// Stops a process by pid file: TERM, then KILL after `grace`.
fn stop(pidfile: &Path, grace: Duration) {
    if let Some(p) = pid(pidfile) {
        if alive(p) {
            let _ = signal(p, "TERM");
            let deadline = std::time::Instant::now() + grace;
            while alive(p) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(p) {
                let _ = signal(p, "KILL");
            }
        }
    }
    let _ = std::fs::remove_file(pidfile);
}

fn run(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!("{} {} failed: {}", program.display(), args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `deployer up --provider local --nodes N`.
pub async fn up(root: &Path, name: &str, nodes: usize, opts: &Options, p: &Progress) -> Result<i32> {
    let dir = Dir::new(root, name);
    let mut rec = match dir.load()? {
        Some(r) if r.provider != "local" => bail!("cluster {name} is a {} cluster: pick another --name for a local one", r.provider),
        Some(r) => r,
        None => {
            let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
            let ts = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            Cluster {
                version: VERSION,
                name: name.to_string(),
                provider: "local".into(),
                region: "local".into(),
                created: ts.clone(),
                expires: "never".into(),
                ssh: Ssh { user: String::new(), key_file: String::new(), known_hosts_file: String::new(), connect: "private".into(), key_pair: String::new() },
                network: Network { vpc_cidr: "127.0.0.0/8".into(), subnet_cidr: "127.0.0.0/8".into(), ..Default::default() },
                settings: Settings { nodes, instance_type: "local".into(), monitor_instance_type: None, ami: String::new(), volume_gb: 0 },
                nodes: Vec::new(),
                monitor: None,
            }
        }
    };
    rec.settings.nodes = rec.settings.nodes.max(nodes);
    let count = rec.settings.nodes;
    form(&dir, &mut rec, opts, p, count).await?;
    println!("{:>5}  {:<26} {:<60} PUBLIC KEY", "INDEX", "API", "WEBSOCKET");
    for h in rec.nodes.iter().filter(|h| h.state == "running") {
        println!("{:>5}  {:<26} {:<60} {}", h.index, h.api.as_deref().unwrap_or("-"), h.ws.as_deref().unwrap_or("-"), h.public_key.as_deref().unwrap_or("-"));
    }
    println!("record: {} ; processes keep running until `deployer down --name {name}`", dir.file().display());
    Ok(0)
}

/// "Installs" the binaries into `clusters/<name>/bin` (a hard link, or a copy across file
/// systems), so the cluster keeps running the build it was formed with and `fault … start`
/// needs no flags; returns the options pointing there.
fn install(dir: &Dir, opts: &Options) -> Result<Options> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let mut installed = opts.clone();
    for (src, name) in [(&opts.cairn_binary, "cairn"), (&opts.nats_server, "nats-server")] {
        let dst = bin.join(name);
        let same = std::fs::read(src).ok().zip(std::fs::read(&dst).ok()).is_some_and(|(a, b)| a == b);
        if !same {
            let tmp = bin.join(format!("{name}.new"));
            let _ = std::fs::remove_file(&tmp);
            if std::fs::hard_link(src, &tmp).is_err() {
                std::fs::copy(src, &tmp).with_context(|| format!("copying {} into {}", src.display(), bin.display()))?;
            }
            std::fs::rename(&tmp, &dst)?;
        }
        match name {
            "cairn" => installed.cairn_binary = dst,
            _ => installed.nats_server = dst,
        }
    }
    Ok(installed)
}

/// The binaries a local cluster was formed with.
pub fn installed(dir: &Dir) -> Result<Options> {
    let mut o = crate::up::InstallArgs::defaults().options_with(dir.join("bin/cairn"), dir.join("bin/nats-server"));
    o.cairn_binary = std::fs::canonicalize(&o.cairn_binary).with_context(|| format!("{} is missing: run `deployer up --provider local` again", o.cairn_binary.display()))?;
    o.nats_server = std::fs::canonicalize(&o.nats_server)?;
    Ok(o)
}

/// Forms (or re-forms) a federation of the first `count` members and checks it.
async fn form(dir: &Dir, rec: &mut Cluster, opts: &Options, p: &Progress, count: usize) -> Result<()> {
    let secrets = configure::secrets(dir)?;
    let opts = &install(dir, opts)?;
    let mut phase = p.phase("members: keys, configs", count as u64);
    let mut members = Vec::new();
    for i in 0..count {
        let md = member_dir(dir, i);
        std::fs::create_dir_all(md.join("data"))?;
        std::fs::create_dir_all(md.join("nats"))?;
        let config = md.join("config.toml");
        let c = config.display().to_string();
        if !config.exists() {
            run(&opts.cairn_binary, &["--config", &c, "configure", "-y"])?;
        }
        let key = run(&opts.cairn_binary, &["--config", &c, "export-my-pubkey"])?.trim().to_string();
        let ports = ports_of(rec.host("node", i))?;
        members.push(Member { host: "127.0.0.1".into(), bind: "127.0.0.1".into(), ports, public_key: key });
    }
    for (i, m) in members.iter().enumerate() {
        let md = member_dir(dir, i);
        let fed = federation::node_config(i, &members, &secrets, &md.join("data"), &Config::default());
        let fed_file = md.join("federation.toml");
        cluster::write_atomic(&fed_file, toml::to_string_pretty(&fed)?.as_bytes(), 0o600)?;
        let c = md.join("config.toml").display().to_string();
        run(&opts.cairn_binary, &["--config", &c, "configure", "--federation", &fed_file.display().to_string()])?;
        std::fs::remove_file(&fed_file)?;
        cluster::write_atomic(&md.join("nats.conf"), federation::nats_config(i, &members, &secrets, &md.join("nats")).as_bytes(), 0o600)?;
        let host = Host {
            index: i,
            role: "node".into(),
            instance_id: Some(format!("local-route-{}", m.ports.route)),
            instance_type: "local".into(),
            private_ip: Some("127.0.0.1".into()),
            public_ip: None,
            api: Some(format!("http://127.0.0.1:{}", m.ports.api)),
            ws: Some(format!("ws://127.0.0.1:{}/api/v1/streams/valid_transactions", m.ports.ws)),
            nats: Some(format!("nats://127.0.0.1:{}", m.ports.nats)),
            public_key: Some(m.public_key.clone()),
            host_key: String::new(),
            state: "configured".into(),
        };
        match rec.host_mut("node", i) {
            Some(h) => *h = host,
            None => rec.nodes.push(host),
        }
        phase.step(&format!("node {i}"));
    }
    phase.finish();
    dir.save(rec)?;
    let mut phase = p.phase("start engines, then nodes", 2 * count as u64);
    for i in 0..count {
        start_member(dir, i, "engine", opts)?;
        phase.step(&format!("node {i} engine"));
    }
    for i in 0..count {
        start_member(dir, i, "node", opts)?;
        phase.step(&format!("node {i}"));
    }
    phase.finish();
    let watch_dir = dir.path.clone();
    configure::health_watching(rec, count, opts.health_timeout, p, Box::new(move || members_alive(&watch_dir, count))).await?;
    for h in rec.nodes.iter_mut().filter(|h| h.role == "node") {
        h.state = if h.index < count { "running".into() } else { "standby".into() };
    }
    dir.save(rec)?;
    crate::inventory::write(dir, rec)?;
    Ok(())
}

/// Fails, with the end of its log, when an engine or node of the first `count` members has exited.
fn members_alive(cluster: &Path, count: usize) -> Result<()> {
    for i in 0..count {
        let md = cluster.join(format!("node{i}"));
        for (what, log) in [("engine", "nats.log"), ("node", "node.log")] {
            if !pid(&md.join(format!("{what}.pid"))).is_some_and(alive) {
                let text = std::fs::read_to_string(md.join(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                bail!(
                    "node {i}'s {what} exited while the federation was forming; the end of {}:\n{}",
                    md.join(log).display(),
                    lines[lines.len().saturating_sub(8)..].join("\n")
                );
            }
        }
    }
    Ok(())
}

/// Starts a member's engine or node unless it is already running.
fn start_member(dir: &Dir, i: usize, what: &str, opts: &Options) -> Result<()> {
    let md = member_dir(dir, i);
    let pidfile = md.join(format!("{what}.pid"));
    if pid(&pidfile).is_some_and(alive) {
        return Ok(());
    }
    match what {
        "engine" => spawn(&opts.nats_server, &["--config", &md.join("nats.conf").display().to_string()], &md.join("nats.log"), &pidfile),
        _ => spawn(&opts.cairn_binary, &["--config", &md.join("config.toml").display().to_string(), "start"], &md.join("node.log"), &pidfile),
    }
}

/// Stops every member process of a local cluster and removes its directory.
pub fn down(dir: &Dir) -> Result<i32> {
    let rec = crate::operate::load(dir)?;
    for h in rec.nodes.iter().filter(|h| h.role == "node") {
        let md = member_dir(dir, h.index);
        stop(&md.join("node.pid"), Duration::from_secs(10));
        stop(&md.join("engine.pid"), Duration::from_secs(5));
    }
    std::fs::remove_dir_all(&dir.path).with_context(|| format!("removing {}", dir.path.display()))?;
    println!("local cluster {}: every process stopped, {} removed", rec.name, dir.path.display());
    Ok(0)
}

/// `fault` on a local member.
pub fn fault(dir: &Dir, index: usize, action: &str, target: &str) -> Result<i32> {
    let rec = crate::operate::load(dir)?;
    rec.host("node", index).with_context(|| format!("cluster {} has no node {index}", rec.name))?;
    let md = member_dir(dir, index);
    let what = if target == "engine" { "engine" } else { "node" };
    let pidfile = md.join(format!("{what}.pid"));
    match action {
        "kill" => {
            if let Some(p) = pid(&pidfile).filter(|p| alive(*p)) {
                signal(p, "KILL")?;
            }
            let _ = std::fs::remove_file(&pidfile);
        }
        "stop" => stop(&pidfile, Duration::from_secs(10)),
        "start" => start_member(dir, index, what, &installed(dir)?)?,
        "pause" | "resume" => {
            let p = pid(&pidfile).filter(|p| alive(*p)).with_context(|| format!("node {index}'s {what} is not running"))?;
            signal(p, if action == "pause" { "STOP" } else { "CONT" })?;
        }
        other => bail!("fault {other:?}: use kill, stop, start, pause or resume"),
    }
    println!("node {index}: {action} {target} done");
    Ok(0)
}

/// `logs` of a local member: the last `lines` of its log file.
pub fn logs(dir: &Dir, index: usize, engine: bool, lines: usize) -> Result<i32> {
    let f = member_dir(dir, index).join(if engine { "nats.log" } else { "node.log" });
    let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
    let all: Vec<&str> = text.lines().collect();
    for l in &all[all.len().saturating_sub(lines)..] {
        println!("{l}");
    }
    Ok(0)
}

/// `reset --nodes K` of a local cluster: stop all, wipe data, form the first K anew.
pub async fn reset(dir: &Dir, count: usize, opts: &Options, p: &Progress) -> Result<i32> {
    let mut rec = crate::operate::load(dir)?;
    let total = rec.nodes.iter().filter(|h| h.role == "node").count();
    if count == 0 || count > total {
        bail!("--nodes {count}: the cluster has {total} nodes (grow it with `deployer up --provider local --nodes N`)");
    }
    for i in 0..total {
        let md = member_dir(dir, i);
        stop(&md.join("node.pid"), Duration::from_secs(10));
        stop(&md.join("engine.pid"), Duration::from_secs(5));
        for d in ["data", "nats"] {
            let _ = std::fs::remove_dir_all(md.join(d));
        }
    }
    form(dir, &mut rec, opts, p, count).await?;
    println!("local cluster {}: a fresh federation of {count} of {total} nodes is running", rec.name);
    Ok(0)
}

/// `exec` on a local cluster: CMD in each selected member's directory (CAIRN_CONFIG set).
pub fn exec(dir: &Dir, which: &str, cmd: &[String]) -> Result<i32> {
    let rec = crate::operate::load(dir)?;
    let indexes: Vec<usize> = if which.eq_ignore_ascii_case("all") {
        rec.nodes.iter().filter(|h| h.role == "node").map(|h| h.index).collect()
    } else {
        vec![which.parse().with_context(|| format!("{which:?} is neither `all` nor a node index"))?]
    };
    let mut code = 0;
    for i in indexes {
        let md = member_dir(dir, i);
        let out = Command::new("sh").arg("-c").arg(cmd.join(" ")).current_dir(&md).env("CAIRN_CONFIG", md.join("config.toml")).output()?;
        // A closed pipe (`| head`) ends the listing quietly.
        use std::io::Write;
        let mut so = std::io::stdout();
        if writeln!(so, "--- node {i} (exit {})", out.status.code().unwrap_or(-1)).and_then(|_| so.write_all(&out.stdout)).is_err() {
            return Ok(code);
        }
        let _ = std::io::stderr().write_all(&out.stderr);
        if !out.status.success() {
            code = 1;
        }
    }
    Ok(code)
}

/// `status` of a local cluster: each member's processes as the pid files and /proc say.
pub fn status(dir: &Dir) -> Result<i32> {
    let rec = crate::operate::load(dir)?;
    println!("local cluster {} (created {})", rec.name, rec.created);
    println!("{:>5}  {:<10} {:<8} {:<8} {:<26} PUBLIC KEY", "INDEX", "STATE", "ENGINE", "NODE", "API");
    for h in rec.nodes.iter().filter(|h| h.role == "node") {
        let md = member_dir(dir, h.index);
        let up = |f: &str| if pid(&md.join(f)).is_some_and(alive) { "running" } else { "stopped" };
        println!("{:>5}  {:<10} {:<8} {:<8} {:<26} {}", h.index, h.state, up("engine.pid"), up("node.pid"), h.api.as_deref().unwrap_or("-"), h.public_key.as_deref().unwrap_or("-"));
    }
    Ok(0)
}
