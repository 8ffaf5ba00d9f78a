//! Working with a configured cluster: `exec` (a command on one or every host), `logs` (a
//! service's journal), `fault` (kill, stop, start, pause, resume a node or its engine server:
//! what loadgen's fault schedules call) and `reset` (wipe every node's data and form a fresh
//! federation of the first K nodes without re-provisioning: what `loadgen sweep --cluster`
//! calls before each point).

use crate::cluster::{Cluster, Dir, Host};
use crate::configure::{self, Options, DATA_DIR, NATS_DIR, UNITS};
use crate::progress::Progress;
use crate::ssh::{shell_quote, Access};
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Loads a cluster record or says how to get one.
pub fn load(dir: &Dir) -> Result<Cluster> {
    dir.load()?.with_context(|| format!("no cluster record at {}: `deployer up --name NAME` makes one, `deployer list` shows what exists", dir.file().display()))
}

/// The node hosts `which` names: `all`, or a node index.
fn select<'a>(rec: &'a Cluster, which: &str) -> Result<Vec<&'a Host>> {
    let nodes: Vec<&Host> = rec.nodes.iter().filter(|h| h.role == "node").collect();
    if which.eq_ignore_ascii_case("all") {
        return Ok(nodes);
    }
    let i: usize = which.parse().with_context(|| format!("{which:?} is neither `all` nor a node index (0..{})", nodes.len()))?;
    let h = nodes.into_iter().find(|h| h.index == i).with_context(|| format!("cluster {} has no node {i} (`deployer status --name {}`)", rec.name, rec.name))?;
    Ok(vec![h])
}

/// `deployer exec ALL|I -- CMD`: runs CMD as root on the hosts in parallel; prints each host's
/// output under its name; exit 1 if any failed.
pub async fn exec(dir: &Dir, which: &str, cmd: &[String], timeout: Duration) -> Result<i32> {
    if cmd.is_empty() {
        bail!("no command: `deployer exec all -- uptime`");
    }
    let rec = load(dir)?;
    let access = Access::new(dir, &rec, timeout)?;
    let script = cmd.join(" ");
    let hosts = select(&rec, which)?;
    let results = futures_util::future::join_all(hosts.iter().map(|h| async { access.run_once(h, &script).await.map(|o| (h.index, o)) })).await;
    let mut code = 0;
    for (h, res) in hosts.iter().zip(results) {
        match res {
            Ok((i, (rc, out, err))) => {
                println!("--- node {i} (exit {rc})");
                print!("{out}");
                if !err.is_empty() {
                    eprint!("{err}");
                }
                if rc != 0 {
                    code = 1;
                }
            }
            Err(e) => {
                println!("--- node {}: {e:#}", h.index);
                code = 1;
            }
        }
    }
    Ok(code)
}

/// The unit of a target: `node` or `engine`.
fn unit(target: &str) -> Result<&'static str> {
    match target {
        "node" => Ok(UNITS[1]),
        "engine" => Ok(UNITS[0]),
        other => bail!("{other:?} is neither `node` nor `engine`"),
    }
}

/// `deployer logs I [--engine] [--lines N] [--follow]`.
pub async fn logs(dir: &Dir, index: usize, engine: bool, lines: usize, follow: bool, timeout: Duration) -> Result<i32> {
    let rec = load(dir)?;
    let access = Access::new(dir, &rec, timeout)?;
    let h = select(&rec, &index.to_string())?[0];
    let r = access.connect(h).await?;
    let u = if engine { UNITS[0] } else { UNITS[1] };
    let cmd = format!("journalctl -u {u} --no-pager -n {lines}{}", if follow { " -f" } else { "" });
    let code = r.run_inherit(&cmd).await?;
    r.close().await;
    Ok(code)
}

/// `deployer fault I ACTION [node|engine]`: kill (SIGKILL, then kept down until `start`),
/// stop (clean), start, pause (SIGSTOP), resume (SIGCONT).
pub async fn fault(dir: &Dir, index: usize, action: &str, target: &str, timeout: Duration) -> Result<i32> {
    let rec = load(dir)?;
    let u = unit(target)?;
    let main_pid = format!("systemctl show -p MainPID {u} | sed 's/^MainPID=//'");
    let script = match action {
        // SIGKILL, then `stop` so that Restart=always does not bring it back before `start`.
        "kill" => format!("P=$({main_pid}); if [ -n \"$P\" ] && [ \"$P\" != 0 ]; then kill -9 \"$P\"; fi; systemctl stop {u} >/dev/null 2>&1; true"),
        "stop" => format!("systemctl stop {u}"),
        "start" => format!("systemctl start {u} && systemctl is-active {u} >/dev/null"),
        "pause" | "resume" => format!(
            "P=$({main_pid}); [ -n \"$P\" ] && [ \"$P\" != 0 ] || {{ echo '{u} is not running' >&2; exit 1; }}; kill -{} \"$P\"",
            if action == "pause" { "STOP" } else { "CONT" }
        ),
        other => bail!("fault {other:?}: use kill, stop, start, pause or resume"),
    };
    let access = Access::new(dir, &rec, timeout)?;
    let h = select(&rec, &index.to_string())?[0];
    let r = access.connect(h).await?;
    r.run(&script).await.with_context(|| format!("fault {action} {target} on node {index}"))?;
    r.close().await;
    println!("node {index}: {action} {target} ({u}) done");
    Ok(0)
}

/// `deployer reset --nodes K`: stops everything, wipes every node's data and engine store, and
/// forms a fresh federation of the first K nodes (same keys, same binaries); the others stay
/// stopped until a reset includes them.
pub async fn reset(dir: &Dir, members: usize, opts: &Options, p: &Progress) -> Result<i32> {
    let mut rec = load(dir)?;
    let total = rec.nodes.iter().filter(|h| h.role == "node").count();
    if members == 0 || members > total {
        bail!("--nodes {members}: the cluster has {total} nodes (grow it with `deployer up --nodes N`)");
    }
    let access = Access::new(dir, &rec, opts.ssh_timeout)?;
    let hosts: Vec<Host> = rec.nodes.iter().filter(|h| h.role == "node").cloned().collect();
    let mut phase = p.phase("stop and wipe", hosts.len() as u64);
    let wipe = format!(
        "systemctl stop {n} {e} >/dev/null 2>&1; systemctl disable {n} {e} >/dev/null 2>&1; rm -rf {d} {j} && mkdir -p {d} {j} && chown cairn:cairn {d} {j}",
        n = UNITS[1],
        e = UNITS[0],
        d = shell_quote(DATA_DIR),
        j = shell_quote(NATS_DIR)
    );
    let results = futures_util::future::join_all(hosts.iter().map(|h| async {
        match access.run_once(h, &wipe).await? {
            (0, _, _) => Ok(h.index),
            (code, _, err) => bail!("node {}: stopping and wiping failed (exit {code}): {}", h.index, err.trim()),
        }
    }))
    .await;
    let mut failed = Vec::new();
    for res in results {
        match res {
            Ok(i) => phase.step(&format!("node {i} stopped and wiped")),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    phase.finish();
    if !failed.is_empty() {
        bail!("{} host(s) could not be reset:\n  {}", failed.len(), failed.join("\n  "));
    }
    for h in rec.nodes.iter_mut().filter(|h| h.role == "node") {
        h.state = if h.index < members { "configured".into() } else { "standby".into() };
    }
    dir.save(&rec)?;
    configure::configure_members(dir, &mut rec, opts, p, members).await?;
    println!("cluster {}: a fresh federation of {members} of {total} nodes is running", rec.name);
    Ok(0)
}
