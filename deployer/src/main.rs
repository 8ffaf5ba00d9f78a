//! `deployer`: provisions Cairn test clusters on EC2 and removes every trace of them.
//! `up` (resumable, idempotent: provisions, then configures the hosts over SSH into a checked
//! federation), `status`, `list`, `down`, `reap`, `ssh`, `exec`, `logs`, `fault`, `reset`.

mod aws;
mod cluster;
mod configure;
mod errors;
mod inventory;
mod local;
mod monitor;
mod operate;
mod keys;
mod pricing;
mod progress;
mod ssh;
mod up;
mod userdata;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use cluster::Dir;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "deployer",
    version,
    about = "Provision Cairn test clusters on EC2 and remove every trace of them",
    long_about = "Provision Cairn test clusters on EC2 and remove every trace of them.\n\n\
Every cluster gets its own VPC, subnet, internet gateway, route table, security group (SSH, API and\n\
Grafana only from --allow-cidr), key pair and instances, all tagged cairn:cluster=NAME. Its record is\n\
clusters/NAME/cluster.yaml (no secrets; the SSH key is a 0600 file beside it), rewritten after\n\
every step: re-running `up` resumes and never duplicates. `down` removes by tag, without the record.\n\n\
Credentials and region come from the standard AWS chain (environment, profiles, SSO, instance role);\n\
AWS_ENDPOINT_URL is honoured. Hosts power themselves off at the TTL; `reap` removes expired clusters.\n\n\
`up` then configures the hosts over SSH (cairn and nats-server installed, keys made on each node,\n\
keyrings and engine routes, systemd units) and checks the federation with a smoke transaction.\n\
The monitor host gets the monitor/ stack (Grafana password 0600 beside the record).\n\
--provider local runs the same federation as processes on this machine."
)]
struct Cli {
    /// Where cluster records live (one directory per cluster)
    #[arg(long, global = true, env = "CAIRN_CLUSTERS_DIR", default_value = "clusters")]
    dir: PathBuf,
    /// AWS profile (default: the chain's: AWS_PROFILE, then `default`)
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// AWS region (default: the cluster record's, then AWS_REGION / the profile's)
    #[arg(long, global = true)]
    region: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision (or complete) a cluster: network, security group, key pair, N nodes + a monitor
    Up(Box<up::UpArgs>),
    /// Show a cluster's hosts as EC2 reports them, beside its record
    Status(NameArg),
    /// List every Cairn cluster in the region (found by tag), with expiry
    List,
    /// Remove everything tagged with the cluster, in dependency order; works without the record
    Down(DownArgs),
    /// Remove every cluster in the region whose TTL has passed
    Reap {
        /// Only list what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Run CMD as root on every node (`all`) or node I, in parallel; each host's output under its name
    Exec {
        /// `all` or a node index
        which: String,
        #[command(flatten)]
        name: NameArg,
        /// How long to keep retrying SSH to a host, seconds
        #[arg(long, default_value_t = 60)]
        ssh_timeout: u64,
        /// The command (after --)
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Show node I's service log (journalctl); --engine for its nats-server
    Logs {
        /// Node index
        index: usize,
        #[command(flatten)]
        name: NameArg,
        /// The engine server's log instead of the node's
        #[arg(long)]
        engine: bool,
        /// Lines to show
        #[arg(long, default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Inject a fault on node I: kill (SIGKILL; stays down until start), stop, start, pause, resume
    Fault {
        /// Node index
        index: usize,
        /// kill, stop, start, pause or resume
        #[arg(value_parser = ["kill", "stop", "start", "pause", "resume"])]
        action: String,
        /// What to act on: the node, or its engine server
        #[arg(default_value = "node", value_parser = ["node", "engine"])]
        target: String,
        #[command(flatten)]
        name: NameArg,
    },
    /// Stop everything, wipe all data, and form a fresh federation of the first K nodes (no re-provisioning)
    Reset {
        /// Members of the fresh federation (the first K nodes; the rest stay stopped)
        #[arg(long)]
        nodes: usize,
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        install: up::InstallArgs,
    },
    /// Open a shell on host I (a node index, or `monitor`), or run CMD there; host keys are pinned
    Ssh {
        /// Node index (0-based) or `monitor`
        host: String,
        #[command(flatten)]
        name: NameArg,
        /// Command to run instead of a shell
        #[arg(last = true)]
        cmd: Vec<String>,
    },
}

#[derive(Args)]
struct NameArg {
    /// Cluster name
    #[arg(long, default_value = "cairn")]
    name: String,
}

#[derive(Args)]
struct DownArgs {
    #[command(flatten)]
    name: NameArg,
    /// How long to wait for instances to terminate, seconds
    #[arg(long, default_value_t = 600)]
    wait_timeout: u64,
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<i32> {
    let profile = cli.profile.as_deref();
    match cli.cmd {
        Cmd::Up(args) => up::up(&cli.dir, profile, cli.region.as_deref(), *args).await,
        Cmd::Status(n) if is_local(&cli.dir, &n.name) => local::status(&Dir::new(&cli.dir, &n.name)),
        Cmd::Status(n) => status(&cli.dir, profile, cli.region.as_deref(), &n.name).await,
        Cmd::List => list(&cli.dir, profile, cli.region.as_deref()).await,
        Cmd::Down(d) if is_local(&cli.dir, &d.name.name) => local::down(&Dir::new(&cli.dir, &d.name.name)),
        Cmd::Down(d) => down(&cli.dir, profile, cli.region.as_deref(), &d.name.name, Duration::from_secs(d.wait_timeout)).await,
        Cmd::Reap { dry_run } => reap(&cli.dir, profile, cli.region.as_deref(), dry_run).await,
        Cmd::Ssh { name, .. } if is_local(&cli.dir, &name.name) => {
            bail!("cluster {} is local: no SSH; its members' files are in {}/node<i> (`deployer exec` runs commands there)", name.name, Dir::new(&cli.dir, &name.name).path.display())
        }
        Cmd::Ssh { host, name, cmd } => ssh(&cli.dir, &name.name, &host, &cmd),
        Cmd::Exec { which, name, cmd, .. } if is_local(&cli.dir, &name.name) => local::exec(&Dir::new(&cli.dir, &name.name), &which, &cmd),
        Cmd::Exec { which, name, ssh_timeout, cmd } => operate::exec(&Dir::new(&cli.dir, &name.name), &which, &cmd, Duration::from_secs(ssh_timeout)).await,
        Cmd::Logs { index, name, engine, lines, .. } if is_local(&cli.dir, &name.name) => local::logs(&Dir::new(&cli.dir, &name.name), index, engine, lines),
        Cmd::Logs { index, name, engine, lines, follow } => operate::logs(&Dir::new(&cli.dir, &name.name), index, engine, lines, follow, Duration::from_secs(60)).await,
        Cmd::Fault { index, action, target, name } if is_local(&cli.dir, &name.name) => local::fault(&Dir::new(&cli.dir, &name.name), index, &action, &target),
        Cmd::Fault { index, action, target, name } => operate::fault(&Dir::new(&cli.dir, &name.name), index, &action, &target, Duration::from_secs(60)).await,
        Cmd::Reset { nodes, name, install } if is_local(&cli.dir, &name.name) => {
            let dir = Dir::new(&cli.dir, &name.name);
            // The binaries the cluster was formed with, unless others are given.
            let opts = if install.cairn_binary.is_none() && install.nats_server.is_none() { local::installed(&dir)? } else { install.options()? };
            local::reset(&dir, nodes, &opts, &progress::Progress::new()).await
        }
        Cmd::Reset { nodes, name, install } => operate::reset(&Dir::new(&cli.dir, &name.name), nodes, &install.options()?, &progress::Progress::new()).await,
    }
}

/// Whether cluster `name` has a record saying `provider: local`.
fn is_local(root: &std::path::Path, name: &str) -> bool {
    Dir::new(root, name).load().ok().flatten().is_some_and(|r| r.provider == "local")
}

/// The region to use for an existing cluster: the flag, else its record's, else the chain's.
fn region_for(dir: &Dir, flag: Option<&str>) -> Result<Option<String>> {
    Ok(match flag {
        Some(r) => Some(r.to_string()),
        None => dir.load()?.map(|c| c.region),
    })
}

async fn status(root: &std::path::Path, profile: Option<&str>, region: Option<&str>, name: &str) -> Result<i32> {
    let dir = Dir::new(root, name);
    let rec = dir.load()?.with_context(|| {
        format!("no cluster record at {}: `deployer list` shows the clusters in a region, `deployer up --name {name}` makes one", dir.file().display())
    })?;
    let aws = aws::connect(profile, Some(region.unwrap_or(&rec.region))).await?;
    let live = aws.instances(name).await?;
    println!("cluster {name} in {}: created {}, expires {}{}", rec.region, rec.created, rec.expires, expiry_note(&rec.expires));
    println!("{:<8} {:>5}  {:<21} {:<14} {:<10} {:<15} {:<15}", "ROLE", "INDEX", "INSTANCE", "TYPE", "STATE", "PRIVATE IP", "PUBLIC IP");
    for h in &rec.nodes {
        let l = h.instance_id.as_ref().and_then(|id| live.iter().find(|i| &i.id == id));
        let state = l.map(|i| i.state.as_str()).unwrap_or(if h.instance_id.is_some() { "gone" } else { "not launched" });
        println!(
            "{:<8} {:>5}  {:<21} {:<14} {:<10} {:<15} {:<15}",
            h.role,
            h.index,
            h.instance_id.as_deref().unwrap_or("-"),
            h.instance_type,
            state,
            l.and_then(|i| i.private_ip.as_deref()).or(h.private_ip.as_deref()).unwrap_or("-"),
            l.and_then(|i| i.public_ip.as_deref()).or(h.public_ip.as_deref()).unwrap_or("-"),
        );
    }
    let strays: Vec<&aws::Instance> = live.iter().filter(|i| !rec.nodes.iter().any(|h| h.instance_id.as_deref() == Some(&i.id))).collect();
    for s in &strays {
        println!("{:<8} {:>5}  {:<21} {:<14} {:<10} (tagged with the cluster but not in its record: `deployer up` adopts it)", s.role, s.index, s.id, s.instance_type, s.state);
    }
    let wanted = rec.settings.nodes + usize::from(rec.settings.monitor_instance_type.is_some());
    let running = rec.nodes.iter().filter(|h| h.instance_id.as_ref().is_some_and(|id| live.iter().any(|i| &i.id == id && i.state == "running"))).count();
    println!("{running}/{wanted} hosts running");
    Ok(0)
}

fn expiry_note(expires: &str) -> String {
    match time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let left = t - time::OffsetDateTime::now_utc();
            if left.is_negative() {
                " (EXPIRED: `deployer reap` or `deployer down` removes it)".into()
            } else {
                format!(" ({}h{:02}m left)", left.whole_hours(), left.whole_minutes() % 60)
            }
        }
        Err(_) => String::new(),
    }
}

async fn list(root: &std::path::Path, profile: Option<&str>, region: Option<&str>) -> Result<i32> {
    let aws = aws::connect(profile, region).await?;
    let found = aws.clusters().await?;
    if found.is_empty() {
        println!("no Cairn clusters in {}", aws.region);
        return Ok(0);
    }
    println!("{:<24} {:>9}  {:<22} {:<8}", "NAME", "INSTANCES", "EXPIRES", "RECORD");
    for f in found {
        let rec = if Dir::new(root, &f.name).file().exists() { "here" } else { "-" };
        let exp = f.expires.clone().unwrap_or_else(|| "-".into());
        println!("{:<24} {:>9}  {:<22} {:<8}{}", f.name, f.instances, exp, rec, f.expires.as_deref().map(expiry_note).unwrap_or_default());
    }
    Ok(0)
}

async fn down(root: &std::path::Path, profile: Option<&str>, region: Option<&str>, name: &str, wait: Duration) -> Result<i32> {
    let dir = Dir::new(root, name);
    let region = region_for(&dir, region)?;
    let aws = aws::connect(profile, region.as_deref()).await?;
    let p = progress::Progress::new();
    p.say(&format!("removing cluster {name} in {} (everything tagged {}={name})", aws.region, cluster::TAG_CLUSTER));
    let removed = aws.remove(name, wait, &|m| p.say(m)).await?;
    let left = aws.tagged(name).await?.lines();
    if !left.is_empty() {
        eprintln!("error: {} resources tagged with {name} remain: {}; run `deployer down --name {name}` again, or remove them in the console", left.len(), left.join(", "));
        return Ok(1);
    }
    if dir.path.exists() {
        std::fs::remove_dir_all(&dir.path).with_context(|| format!("removing {}", dir.path.display()))?;
        p.say(&format!("removed the local record {}", dir.path.display()));
    }
    println!("cluster {name}: removed {} resources; nothing tagged with it remains in {}", removed.len(), aws.region);
    Ok(0)
}

async fn reap(root: &std::path::Path, profile: Option<&str>, region: Option<&str>, dry_run: bool) -> Result<i32> {
    let aws = aws::connect(profile, region).await?;
    let now = time::OffsetDateTime::now_utc();
    let expired: Vec<aws::Found> = aws
        .clusters()
        .await?
        .into_iter()
        .filter(|f| {
            f.expires
                .as_deref()
                .and_then(|e| time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok())
                .is_some_and(|t| t <= now)
        })
        .collect();
    if expired.is_empty() {
        println!("no expired Cairn clusters in {}", aws.region);
        return Ok(0);
    }
    let mut code = 0;
    for f in expired {
        if dry_run {
            println!("would remove {} (expired {}, {} instances)", f.name, f.expires.unwrap_or_default(), f.instances);
            continue;
        }
        println!("reaping {} (expired {})", f.name, f.expires.clone().unwrap_or_default());
        let c = down(root, profile, Some(&aws.region), &f.name, Duration::from_secs(600)).await?;
        code = code.max(c);
    }
    Ok(code)
}

fn ssh(root: &std::path::Path, name: &str, host: &str, cmd: &[String]) -> Result<i32> {
    let dir = Dir::new(root, name);
    let rec = dir.load()?.with_context(|| format!("no cluster record at {}", dir.file().display()))?;
    let (role, index) = match host {
        "monitor" => ("monitor", 0),
        i => ("node", i.parse::<usize>().with_context(|| format!("host {i:?} is neither a node index nor `monitor`"))?),
    };
    let h = rec.host(role, index).with_context(|| format!("cluster {name} has no {role} {index} (`deployer status --name {name}`)"))?;
    let addr = if rec.ssh.connect == "private" { h.private_ip.as_deref() } else { h.public_ip.as_deref() };
    let Some(addr) = addr else { bail!("{role} {index} has no {} address yet: run `deployer up --name {name}` to finish it", rec.ssh.connect) };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("ssh")
        .arg("-i")
        .arg(dir.join(&rec.ssh.key_file))
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", dir.join(&rec.ssh.known_hosts_file).display()))
        .arg(format!("{}@{addr}", rec.ssh.user))
        .args(cmd)
        .exec();
    bail!("could not run ssh: {err} (install the OpenSSH client)")
}
