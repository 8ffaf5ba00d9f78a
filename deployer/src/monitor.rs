//! The monitor host: the `monitor/` stack (Telegraf → InfluxDB → Grafana, its files built into
//! this binary) under /opt/cairn/monitor, Docker and its compose plugin from the
//! distribution's packages, `docker compose up -d` with a generated Grafana admin password
//! (kept 0600 beside the cluster file, in a 0600 `.env` on the host; never admin/admin), and
//! Grafana published on the host (the security group admits 3000 from the operator's CIDR
//! only). Every node's StatsD points at the host's private address (UDP 8125, open only within
//! the cluster's security group).

use crate::cluster::{self, Cluster, Dir, Host, Monitor};
use crate::progress::Progress;
use crate::ssh::{Access, Remote};
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Where the stack lives on the monitor host.
pub const ROOT: &str = "/opt/cairn/monitor";
/// The services `docker compose` must report running.
pub const SERVICES: [&str; 3] = ["grafana", "influxdb", "telegraf"];

/// The stack's files, as in the repository's `monitor/` directory.
pub const FILES: &[(&str, &str)] = &[
    ("docker-compose.yml", include_str!("../../monitor/docker-compose.yml")),
    ("telegraf/telegraf.conf", include_str!("../../monitor/telegraf/telegraf.conf")),
    ("grafana/provisioning/datasources/influxdb.yaml", include_str!("../../monitor/grafana/provisioning/datasources/influxdb.yaml")),
    ("grafana/provisioning/dashboards/cairn.yaml", include_str!("../../monitor/grafana/provisioning/dashboards/cairn.yaml")),
    ("grafana/dashboards/overview.json", include_str!("../../monitor/grafana/dashboards/overview.json")),
    ("grafana/dashboards/load-test.json", include_str!("../../monitor/grafana/dashboards/load-test.json")),
    ("grafana/dashboards/node.json", include_str!("../../monitor/grafana/dashboards/node.json")),
];

/// The Grafana admin password, generated once and kept 0600 in `grafana.secret`.
fn password(dir: &Dir) -> Result<String> {
    let path = dir.join("grafana.secret");
    if let Ok(p) = std::fs::read_to_string(&path) {
        if p.trim().len() >= 16 {
            return Ok(p.trim().to_string());
        }
    }
    let p = cairn::federation::Secrets::generate().password;
    cluster::write_atomic(&path, format!("{p}\n").as_bytes(), 0o600)?;
    Ok(p)
}

/// The monitor host, if the cluster has one.
pub fn host(rec: &Cluster) -> Option<&Host> {
    rec.host("monitor", 0)
}

/// Installs and starts the stack on the monitor host; records its URLs.
pub async fn configure(dir: &Dir, rec: &mut Cluster, access: &Access, p: &Progress) -> Result<()> {
    let Some(h) = host(rec).cloned() else { return Ok(()) };
    let mut phase = p.phase("monitor stack", 3);
    let r = access.connect(&h).await?;
    let result = install(dir, &r, &mut phase).await;
    let addr = r.addr.clone();
    r.close().await;
    result?;
    phase.finish();
    let private = h.private_ip.clone().context("the monitor host has no private address")?;
    rec.monitor = Some(Monitor { grafana_url: format!("http://{addr}:3000"), statsd: format!("{private}:8125") });
    dir.save(rec)?;
    Ok(())
}

async fn install(dir: &Dir, r: &Remote, phase: &mut crate::progress::Phase) -> Result<()> {
    r.run(
        "command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 || \
         { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose-v2 >/dev/null; }; \
         docker compose version >/dev/null",
    )
    .await
    .context("installing Docker and its compose plugin from the distribution's packages on the monitor host")?;
    phase.step("docker and compose present");
    let mut changed = false;
    for (path, text) in FILES {
        changed |= r.put(&format!("{ROOT}/{path}"), text.as_bytes(), 0o644, "root:root").await?;
    }
    let env = format!("# Written by the deployer (0600): compose reads it.\nGRAFANA_ADMIN_PASSWORD={}\nGRAFANA_BIND=0.0.0.0\n", password(dir)?);
    changed |= r.put(&format!("{ROOT}/.env"), env.as_bytes(), 0o600, "root:root").await?;
    phase.step(if changed { "stack files written" } else { "stack files unchanged" });
    r.run(&format!("cd {ROOT} && docker compose up -d >/dev/null")).await.context("docker compose up -d on the monitor host")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let out = r.run(&format!("cd {ROOT} && docker compose ps --services --status running")).await?;
        let running: Vec<&str> = out.lines().map(str::trim).collect();
        let missing: Vec<&&str> = SERVICES.iter().filter(|s| !running.contains(s)).collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("monitor host: {missing:?} not running 300 s after `docker compose up -d`; `deployer ssh monitor -- 'cd {ROOT} && docker compose logs'` shows why");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    phase.step("influxdb, telegraf, grafana running");
    Ok(())
}
