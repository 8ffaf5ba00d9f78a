//! Fault schedules as data (`--faults FILE`):
//!
//! ```yaml
//! faults:
//!   - at: 5s          # after the measured run starts
//!     action: kill    # kill | stop | restart | pause
//!     node: 1         # node index in the federation
//!     target: node    # node (default) | engine
//!     for: 5s         # then start (kill, stop) or resume (pause); restart has no duration
//! ```
//!
//! Every fault heals (start/resume) by the end of the run. Windows are recorded (drawn on the
//! plots) with the time each faulted node took to catch up again after its heal.

use crate::fleet::Fleet;
use crate::http::{get_json, HttpClient};
use crate::point::Down;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scheduled fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, from the start of the measured run ("5s", "1500ms", "1m" or seconds).
    #[serde(with = "secs")]
    pub at: f64,
    /// kill, stop, restart or pause.
    pub action: String,
    /// Node index.
    pub node: usize,
    /// node or engine.
    #[serde(default = "default_target")]
    pub target: String,
    /// How long it lasts before the heal (kill, stop, pause).
    #[serde(rename = "for", default, with = "secs_opt")]
    pub duration: Option<f64>,
}

fn default_target() -> String {
    "node".into()
}

/// A schedule file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The faults, in any order.
    pub faults: Vec<Fault>,
}

/// What happened: one window per fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// The fault.
    pub fault: Fault,
    /// Seconds from the run's start when it was injected.
    pub start_s: f64,
    /// Seconds from the run's start when it was healed.
    pub end_s: f64,
    /// Seconds from the heal until the node answered and reached the applied height a healthy
    /// node had at the heal (None: it did not within 120 s).
    pub recovered_after_s: Option<f64>,
    /// An error injecting or healing, if any.
    pub error: Option<String>,
}

pub(crate) fn parse_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    num.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * mult)
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v}s"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        let s = match &v {
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        super::parse_secs(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a duration: write 5s, 1500ms, 1m or a number of seconds")))
    }
}

mod secs_opt {
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::secs::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        super::secs::deserialize(d).map(Some)
    }
}

impl Schedule {
    /// Reads and checks a schedule file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the fault schedule {}", path.display()))?;
        let s: Schedule = serde_yaml_ng::from_str(&text).with_context(|| format!("{}: not a fault schedule (see `loadgen sweep --help` for the format)", path.display()))?;
        for (i, f) in s.faults.iter().enumerate() {
            let at = format!("{} fault {} (at {}s)", path.display(), i + 1, f.at);
            if !["kill", "stop", "restart", "pause"].contains(&f.action.as_str()) {
                bail!("{at}: action {:?} is not kill, stop, restart or pause", f.action);
            }
            if !["node", "engine"].contains(&f.target.as_str()) {
                bail!("{at}: target {:?} is not node or engine", f.target);
            }
            match (f.action.as_str(), f.duration) {
                ("restart", Some(_)) => bail!("{at}: restart has no duration (it stops and starts at once); use stop with `for`"),
                ("restart", None) => {}
                (_, None) => bail!("{at}: {} needs `for` (how long until it heals)", f.action),
                _ => {}
            }
        }
        Ok(s)
    }

    /// Checks the schedule fits a federation of `n`; returns the node whose stream times commits
    /// (the lowest one never faulted).
    pub fn observer(&self, n: usize) -> Result<usize> {
        if let Some(f) = self.faults.iter().find(|f| f.node >= n) {
            bail!("the fault schedule targets node {} but this point has {n} nodes (0..{}): start the sweep at more nodes or change the schedule", f.node, n - 1);
        }
        (0..n).find(|i| self.faults.iter().all(|f| f.node != *i)).with_context(|| {
            format!("the fault schedule touches all {n} nodes: leave one untouched, its stream times the commits")
        })
    }

    /// When the last heal happens (seconds): the measured run must last longer.
    pub fn end(&self) -> f64 {
        self.faults.iter().map(|f| f.at + f.duration.unwrap_or(0.0)).fold(0.0, f64::max)
    }
}

async fn height(client: &HttpClient, api: &str) -> Option<u64> {
    get_json(client, &format!("{api}/")).await.ok().flatten().and_then(|v| v["state"]["applied_height"].as_u64())
}

/// Runs `schedule` from `start` against `fleet`, marking faulted nodes in `down` (workers route
/// around them); `apis` are the members' URLs, `observer` a node never faulted.
pub async fn execute(schedule: Schedule, fleet: Arc<Mutex<Fleet>>, start: Instant, down: Down, client: HttpClient, apis: Vec<String>, observer: usize) -> Vec<Window> {
    let mut order = schedule.faults.clone();
    order.sort_by(|a, b| a.at.total_cmp(&b.at));
    let tasks: Vec<_> = order
        .into_iter()
        .map(|f| {
            let (fleet, down, client, apis) = (fleet.clone(), down.clone(), client.clone(), apis.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until((start + Duration::from_secs_f64(f.at)).into()).await;
                let act = |action: &'static str| {
                    let (fleet, target, node) = (fleet.clone(), f.target.clone(), f.node);
                    async move { tokio::task::spawn_blocking(move || fleet.lock().expect("fleet").fault(node, action, &target)).await.map_err(anyhow::Error::from).and_then(|r| r) }
                };
                let mut error = None;
                let start_s = start.elapsed().as_secs_f64();
                if f.target == "node" {
                    down[f.node].store(true, Ordering::Relaxed);
                }
                let (inject, heal) = match f.action.as_str() {
                    "kill" => ("kill", "start"),
                    "stop" | "restart" => ("stop", "start"),
                    _ => ("pause", "resume"),
                };
                if let Err(e) = act(inject).await {
                    error = Some(format!("{inject}: {e:#}"));
                }
                tokio::time::sleep(Duration::from_secs_f64(f.duration.unwrap_or(0.0))).await;
                let target_height = height(&client, &apis[observer]).await.unwrap_or(0);
                if let Err(e) = act(heal).await {
                    error.get_or_insert(format!("{heal}: {e:#}"));
                }
                let end_s = start.elapsed().as_secs_f64();
                let healed = Instant::now();
                let mut recovered_after_s = None;
                while healed.elapsed() < Duration::from_secs(120) {
                    if height(&client, &apis[f.node]).await.is_some_and(|h| h >= target_height) {
                        recovered_after_s = Some(healed.elapsed().as_secs_f64());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                down[f.node].store(false, Ordering::Relaxed);
                Window { fault: f, start_s, end_s, recovered_after_s, error }
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(w) = t.await {
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_bad_ones_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.yaml");
        std::fs::write(&p, "faults:\n  - {at: 2s, action: kill, node: 1, for: 1500ms}\n  - {at: 4, action: restart, node: 2, target: engine}\n").unwrap();
        let s = Schedule::load(&p).unwrap();
        assert_eq!(s.faults[0].duration, Some(1.5));
        assert_eq!((s.faults[1].at, s.faults[1].target.as_str()), (4.0, "engine"));
        assert_eq!(s.observer(3).unwrap(), 0);
        assert!(s.observer(2).unwrap_err().to_string().contains("targets node 2"));
        assert_eq!(s.end(), 4.0);
        for (bad, says) in [
            ("faults:\n  - {at: 2s, action: kill, node: 1}\n", "needs `for`"),
            ("faults:\n  - {at: 2s, action: explode, node: 1, for: 1s}\n", "not kill"),
            ("faults:\n  - {at: soon, action: kill, node: 1, for: 1s}\n", "not a duration"),
            ("faults:\n  - {at: 1s, action: restart, node: 1, for: 1s}\n", "no duration"),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = format!("{:#}", Schedule::load(&p).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
