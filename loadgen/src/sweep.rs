//! `loadgen sweep`: for each node count, a fresh federation; the highest offered rate that
//! still meets the objective (double from `start_rate` until a probe fails, then bisect); half
//! of it held for the latency figures, with the fault schedule; the correctness gate; the
//! report rewritten. `manifest.json` records each finished point, so an interrupted sweep
//! continues where it stopped (`--resume DIR`).

use crate::faults::{execute, Schedule};
use crate::fleet::{Fleet, Member};
use crate::gate;
use crate::http::{get_json, HttpClient};
use crate::metrics::Live;
use crate::point::{self, Settings, Targets};
use crate::progress::Progress;
use crate::report::{write_atomic, PointResult, ResultsDir, RunSummary};
use crate::workload::{Kind, Spec};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lowest rate a downward search tries (tx/s).
const MIN_RATE: f64 = 25.0;

/// Everything that defines a sweep (kept in the manifest; a resume reuses it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Node counts, in order.
    pub nodes: Vec<usize>,
    /// `local` or the cluster file.
    pub fleet: String,
    /// The workload.
    pub workload: Spec,
    /// Fixed offered rate (no search) when set.
    pub rate: Option<f64>,
    /// First probe rate of the search.
    pub start_rate: f64,
    /// Highest rate the search tries.
    pub max_rate: f64,
    /// Bisection steps after the first failing probe.
    pub search_steps: usize,
    /// Seconds per probe.
    pub probe_secs: f64,
    /// Seconds of the measured run.
    pub hold_secs: f64,
    /// Objective: commit p99 (ms).
    pub slo_p99_ms: f64,
    /// Objective: committed share of offered.
    pub slo_committed: f64,
    /// Connections.
    pub concurrency: usize,
    /// Fault schedule (its contents, so a resume uses the same one).
    pub faults: Option<Schedule>,
    /// Seconds to wait for commits after the last answer.
    pub commit_timeout: u64,
    /// Send lag p99 (ms) past which a run is invalid.
    pub max_lag_ms: u64,
}

/// The resume record.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    run: String,
    config: Config,
    done: Vec<usize>,
}

/// Every node answers and reports the same keyring (its own key plus the others'); with
/// `all_members`, the keyring has exactly these nodes (a sweep targets every member).
pub async fn preflight(client: &HttpClient, members: &[Member], all_members: bool) -> Result<()> {
    let mut rings = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let v = get_json(client, &format!("{}/", m.api)).await.with_context(|| format!("preflight: node {i}"))?.with_context(|| format!("preflight: node {i} ({}) answers 404 on /", m.api))?;
        let mut ring: Vec<String> = v["keyring"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_string)).collect();
        ring.push(v["public_key"].as_str().unwrap_or("").to_string());
        ring.sort();
        rings.push(ring);
    }
    if let Some((i, r)) = rings.iter().enumerate().find(|(_, r)| **r != rings[0]) {
        bail!("preflight: node {i} has a different keyring than node 0 ({} vs {} keys): these targets are not one federation", r.len(), rings[0].len());
    }
    if all_members && rings[0].len() != members.len() {
        bail!("preflight: the federation's keyring has {} members but {} nodes are targeted: target every member (or `deployer reset`)", rings[0].len(), members.len());
    }
    Ok(())
}

/// Signs a plan with a progress bar, then says how long it took.
pub fn sign(spec: &crate::workload::Spec, count: usize, routes: usize, salt: u64, progress: &Progress, label: &str) -> crate::workload::Plan {
    let t = Instant::now();
    let bar = progress.bar(&format!("{label}: signing"), count as u64);
    let done = std::sync::atomic::AtomicU64::new(0);
    let plan = spec.plan_with(count, routes, salt, &|| {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if d.is_multiple_of(1024) {
            bar.set(d, "");
        }
    });
    bar.finish("signed");
    progress.say(&format!("{label}: signed {} transactions (+{} setup) in {:.1} s", plan.timed.len(), plan.setup.len(), t.elapsed().as_secs_f64()));
    plan
}

/// One measured run on a formed federation.
#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &HttpClient,
    members: &[Member],
    observer: usize,
    cfg: &Config,
    rate: f64,
    secs: f64,
    salt: u64,
    faults: Option<(Schedule, Arc<Mutex<Fleet>>)>,
    progress: &Progress,
    label: &str,
) -> Result<(point::Outcome, Vec<crate::faults::Window>, Vec<String>, Vec<(String, String)>)> {
    let count = ((rate * secs).round() as usize).max(1);
    let plan = sign(&cfg.workload, count, members.len(), salt, progress, label);
    let targets = Targets { api: members.iter().map(|m| m.api.clone()).collect(), ws: members[observer].ws.clone() };
    let settings = Settings {
        rate,
        concurrency: cfg.concurrency,
        mode: "async".into(),
        commit_timeout: Duration::from_secs(cfg.commit_timeout),
        stall: Duration::from_secs(30),
        max_lag: Duration::from_millis(cfg.max_lag_ms),
    };
    point::setup(client, &targets, &plan.setup, cfg.concurrency, Duration::from_secs(cfg.commit_timeout.max(60)), progress).await?;
    let down: point::Down = Arc::new((0..members.len()).map(|_| AtomicBool::new(false)).collect());
    let live = Arc::new(Live::new(false));
    let fault_task = faults.map(|(s, fleet)| {
        let apis = targets.api.clone();
        tokio::spawn(execute(s, fleet, Instant::now() + Duration::from_millis(100), down.clone(), client.clone(), apis, observer))
    });
    let outcome = point::run(&targets, &plan, &settings, live, down, progress, label).await?;
    let mut windows = match fault_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    // Windows are relative to the fault clock (100 ms after the run clock, as is the schedule).
    for w in &mut windows {
        w.start_s += 0.1;
        w.end_s += 0.1;
    }
    let accepted: Vec<String> = outcome.events.iter().zip(&plan.timed).filter(|(e, t)| e.status == 202 && t.kind != Kind::Conflict).map(|(e, _)| e.id.clone()).collect();
    let pairs: Vec<(String, String)> = plan.timed.iter().enumerate().filter_map(|(i, t)| t.twin.filter(|w| *w > i).map(|w| (t.id.clone(), plan.timed[w].id.clone()))).collect();
    Ok((outcome, windows, accepted, pairs))
}

/// Runs (or resumes) a sweep writing into `out`.
pub async fn run(cfg: Config, run_id: &str, out: &Path, fleet: Fleet, provenance: Value, progress: &Progress) -> Result<Vec<PointResult>> {
    let results = ResultsDir::create(out)?;
    let manifest_path = out.join("manifest.json");
    let mut done: Vec<usize> = Vec::new();
    if manifest_path.exists() {
        let m: Manifest = serde_json::from_str(&std::fs::read_to_string(&manifest_path)?).with_context(|| format!("{} is damaged: remove it to start over", manifest_path.display()))?;
        if m.config != cfg {
            bail!("{} holds a different sweep (other flags); resume it with `loadgen sweep --resume {}` or choose another --out", out.display(), out.display());
        }
        done = m.done;
        progress.say(&format!("resuming {}: points already done: {:?}", out.display(), done));
    }
    let mut points: Vec<PointResult> = Vec::new();
    for n in &done {
        let p: PointResult = serde_json::from_str(&std::fs::read_to_string(out.join(format!("points/n{n}.json")))?)?;
        points.push(p);
    }
    let max_n = *cfg.nodes.iter().max().unwrap_or(&1);
    crate::http::ensure_open_files(cfg.concurrency * max_n)?;
    let client = crate::http::client(cfg.concurrency);
    let mut run_value = json!({
        "tool": "cairn loadgen sweep",
        "run": run_id,
        "version": env!("CARGO_PKG_VERSION"),
        "build_commit": env!("CAIRN_BUILD_COMMIT"),
        "config": cfg,
        "started": provenance["started"],
        "git": provenance["git"],
        "binaries": provenance["binaries"],
        "machine": provenance["machine"],
        "hosts": provenance["hosts"],
        "command": provenance["command"],
    });
    let fleet_shared = Arc::new(Mutex::new(fleet));
    let sweep_bar = progress.bar("sweep points", cfg.nodes.len() as u64);
    for (k, &n) in cfg.nodes.iter().enumerate() {
        sweep_bar.set(k as u64, &format!("{n} nodes"));
        if done.contains(&n) {
            continue;
        }
        let t_point = Instant::now();
        let describe = fleet_shared.lock().expect("fleet").describe(n);
        progress.say(&format!("point {n} node(s): forming a fresh federation ({describe})"));
        let mut result = PointResult {
            nodes: n,
            status: "failed".into(),
            reasons: Vec::new(),
            fleet: describe,
            probes: Vec::new(),
            max_rate: None,
            max_committed_tps: None,
            measured: None,
            seconds: Vec::new(),
            faults: Vec::new(),
            gate: Default::default(),
            wall_s: 0.0,
        };
        let attempt: Result<()> = async {
            // Every probe and the measured run get a fresh federation (an empty ledger, as the
            // first probe had) and their own gate before it is replaced.
            let fresh = || async {
                let form = || {
                    let f = fleet_shared.clone();
                    tokio::task::spawn_blocking(move || f.lock().expect("fleet").form(n, max_n))
                };
                // One more try when forming fails: an hours-long sweep should not end on one
                // transient failure (say a process that lost a race for its port); the first
                // error is shown either way.
                let members = match form().await? {
                    Ok(m) => m,
                    Err(e) => {
                        progress.say(&format!("n={n}: forming the federation failed, trying once more: {e:#}"));
                        form().await?.context("forming the federation failed twice")?
                    }
                };
                preflight(&client, &members, true).await?;
                Ok::<_, anyhow::Error>(members)
            };
            let gate_of = |members: &[Member], accepted: Vec<String>, pairs: Vec<(String, String)>| {
                let apis: Vec<String> = members.iter().map(|m| m.api.clone()).collect();
                let client = client.clone();
                async move {
                    progress.say(&format!("n={n}: correctness gate over {} accepted transactions on {} node(s)", accepted.len(), apis.len()));
                    gate::check(&client, &apis, &accepted, &pairs, Duration::from_secs(60)).await
                }
            };
            let observer = match &cfg.faults {
                Some(s) => s.observer(n)?,
                None => 0,
            };
            let mut salt = (n as u64) << 32;
            let mut members = fresh().await?;
            let mut first = true;
            let hold_rate = match cfg.rate {
                Some(r) => r,
                None => {
                    let (mut pass, mut fail): (Option<f64>, Option<f64>) = (None, None);
                    let mut rate = cfg.start_rate;
                    let mut steps = 0;
                    loop {
                        salt += 1;
                        if !first {
                            members = fresh().await?;
                        }
                        first = false;
                        let (o, _, acc, pairs) = measure(&client, &members, observer, &cfg, rate, cfg.probe_secs, salt, None, progress, &format!("n={n} probe {rate:.0} tx/s")).await?;
                        let verdict = gate_of(&members, acc, pairs).await;
                        if !verdict.passed {
                            result.reasons.extend(verdict.reasons.iter().map(|r| format!("gate after the {rate:.0} tx/s probe: {r}")));
                        }
                        let s = RunSummary::of(&o, rate, cfg.probe_secs, cfg.slo_p99_ms, cfg.slo_committed);
                        progress.say(&format!(
                            "n={n} probe {rate:.0} tx/s: committed {:.0} tx/s, p99 {:.0} ms: {}",
                            s.committed_tps,
                            s.commit_latency_ms.p99,
                            s.why_not.as_deref().unwrap_or("meets the objective")
                        ));
                        if s.meets_objective {
                            if pass.is_none_or(|p| rate > p) {
                                pass = Some(rate);
                                result.max_committed_tps = Some(s.committed_tps);
                            }
                        } else {
                            fail = Some(fail.map_or(rate, |f| f.min(rate)));
                        }
                        result.probes.push(s);
                        match (pass, fail) {
                            // The start rate already misses the objective: search downwards.
                            (None, Some(_)) if rate / 2.0 >= MIN_RATE => rate = (rate / 2.0).round(),
                            (_, None) if rate * 2.0 <= cfg.max_rate => rate *= 2.0,
                            (_, None) => break,
                            (Some(p), Some(f)) if steps < cfg.search_steps => {
                                steps += 1;
                                rate = ((p + f) / 2.0).round();
                            }
                            _ => break,
                        }
                    }
                    let Some(p) = pass else {
                        let last = result.probes.last().expect("probed");
                        bail!("even {:.0} tx/s does not meet the objective ({}): the federation is not keeping up at any rate tried", last.rate, last.why_not.clone().unwrap_or_default());
                    };
                    result.max_rate = Some(p);
                    (p / 2.0).max(1.0)
                }
            };
            salt += 1;
            if !first {
                members = fresh().await?;
            }
            let faults = cfg.faults.clone().map(|s| (s, fleet_shared.clone()));
            let (o, windows, acc, pairs) = measure(&client, &members, observer, &cfg, hold_rate, cfg.hold_secs, salt, faults, progress, &format!("n={n} measured {hold_rate:.0} tx/s")).await?;
            point::write_events(&out.join(format!("events-n{n}.csv")), &o.events)?;
            let s = RunSummary::of(&o, hold_rate, cfg.hold_secs, cfg.slo_p99_ms, cfg.slo_committed);
            result.seconds = o.seconds.clone();
            result.faults = windows.clone();
            for w in &windows {
                if let Some(e) = &w.error {
                    result.reasons.push(format!("fault {} on node {}: {e}", w.fault.action, w.fault.node));
                }
            }
            result.reasons.extend(s.invalid.iter().cloned());
            result.measured = Some(s);
            result.gate = gate_of(&members, acc, pairs).await;
            result.reasons.extend(result.gate.reasons.iter().map(|r| format!("gate: {r}")));
            result.status = if !result.gate.passed || result.reasons.iter().any(|r| r.starts_with("fault") || r.starts_with("gate")) {
                "failed".into()
            } else if !result.measured.as_ref().is_some_and(|m| m.invalid.is_empty()) {
                "invalid".into()
            } else {
                "ok".into()
            };
            Ok(())
        }
        .await;
        if let Err(e) = attempt {
            result.reasons.push(format!("{e:#}"));
            result.status = "failed".into();
        }
        result.wall_s = t_point.elapsed().as_secs_f64();
        progress.say(&format!(
            "point {n} node(s): {} in {:.0} s{}",
            result.status,
            result.wall_s,
            result.measured.as_ref().map(|m| format!(" — measured {:.0} tx/s offered: accepted {:.0}, committed {:.0} tx/s, commit p99 {:.0} ms", m.rate, m.accepted_tps, m.committed_tps, m.commit_latency_ms.p99)).unwrap_or_default()
        ));
        for r in &result.reasons {
            progress.say(&format!("  {r}"));
        }
        write_atomic(&out.join(format!("points/n{n}.json")), serde_json::to_string_pretty(&result)?.as_bytes())?;
        points.push(result);
        points.sort_by_key(|p| p.nodes);
        done.push(n);
        write_atomic(&manifest_path, serde_json::to_string_pretty(&Manifest { run: run_id.to_string(), config: cfg.clone(), done: done.clone() })?.as_bytes())?;
        results.write(&run_value, &points)?;
    }
    sweep_bar.finish("all points done");
    let f = fleet_shared.clone();
    tokio::task::spawn_blocking(move || f.lock().expect("fleet").teardown()).await??;
    // Measured again at the end: a shared machine's speed can drift during a sweep.
    progress.say("measuring this machine's raw Ed25519 verify rate again (its speed can drift during a sweep)");
    let before = run_value["machine"]["raw_ed25519_verify_per_s_all_cores"].as_f64().unwrap_or(0.0);
    let raw = crate::provenance::RawVerify::of(before, tokio::task::spawn_blocking(crate::provenance::raw_verify_rate).await?);
    run_value["machine"]["raw_ed25519_verify_per_s_at_end"] = json!(raw.after);
    if let Some(d) = raw.moved() {
        progress.say(&format!(
            "NOTE: this machine's raw verify rate moved {:+.0} % during the sweep ({:.0}/s at the start, {:.0}/s at the end): its speed was not steady, so points measured at different times are not quite comparable; repeat the sweep before reading small differences",
            d * 100.0,
            raw.before,
            raw.after
        ));
    }
    results.write(&run_value, &points)?;
    Ok(points)
}

/// Reads the config and run id of an interrupted sweep in `dir`.
pub fn resume_config(dir: &Path) -> Result<(String, Config)> {
    let path = dir.join("manifest.json");
    let m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{} has no manifest.json: not a sweep's results directory", dir.display()))?)
        .with_context(|| format!("{} is damaged", path.display()))?;
    Ok((m.run, m.config))
}
