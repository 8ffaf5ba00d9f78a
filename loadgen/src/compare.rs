//! `loadgen compare A B`: the differences between two sweeps (results directories or their
//! run.json), point by point, and a non-zero exit when B is worse than A past a threshold:
//! committed tx/s lower, or commit p99 higher, by more than the threshold in percent.

use crate::report::PointResult;
use anyhow::{Context, Result};
use std::path::Path;

fn load(p: &Path) -> Result<(String, Vec<PointResult>)> {
    let file = if p.is_dir() { p.join("run.json") } else { p.to_path_buf() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {} (give a results directory or its run.json)", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let points: Vec<PointResult> = serde_json::from_value(v["points"].clone()).with_context(|| format!("{} has no loadgen sweep points", file.display()))?;
    Ok((v["run"].as_str().unwrap_or("?").to_string(), points))
}

/// The committed tx/s a point is compared by (at the objective when searched) and its p99.
fn figures(p: &PointResult) -> Option<(f64, f64)> {
    let m = p.measured.as_ref()?;
    Some((p.max_committed_tps.unwrap_or(m.committed_tps), m.commit_latency_ms.p99))
}

/// Prints the comparison; returns the regressions past `threshold` percent.
pub fn compare(a: &Path, b: &Path, threshold: f64) -> Result<Vec<String>> {
    let (ra, pa) = load(a)?;
    let (rb, pb) = load(b)?;
    println!("{:>5}  {:>14} {:>14} {:>8}  {:>12} {:>12} {:>8}  status", "nodes", format!("{ra} tx/s"), format!("{rb} tx/s"), "change", "p99 A ms", "p99 B ms", "change");
    let mut bad = Vec::new();
    for x in &pa {
        let Some(y) = pb.iter().find(|y| y.nodes == x.nodes) else {
            println!("{:>5}  only in A", x.nodes);
            continue;
        };
        match (figures(x), figures(y)) {
            (Some((ta, la)), Some((tb, lb))) => {
                let dt = if ta > 0.0 { (tb - ta) / ta * 100.0 } else { 0.0 };
                let dl = if la > 0.0 { (lb - la) / la * 100.0 } else { 0.0 };
                println!("{:>5}  {ta:>14.0} {tb:>14.0} {dt:>+7.1}%  {la:>12.0} {lb:>12.0} {dl:>+7.1}%  {} / {}", x.nodes, x.status, y.status);
                if dt < -threshold {
                    bad.push(format!("{} nodes: committed {tb:.0} tx/s is {:.1} % below {ta:.0}", x.nodes, -dt));
                }
                if dl > threshold {
                    bad.push(format!("{} nodes: commit p99 {lb:.0} ms is {dl:.1} % above {la:.0}", x.nodes));
                }
                if x.status == "ok" && y.status != "ok" {
                    bad.push(format!("{} nodes: B is {} ({})", x.nodes, y.status, y.reasons.join("; ")));
                }
            }
            _ => println!("{:>5}  no measured run in one of them", x.nodes),
        }
    }
    for y in pb.iter().filter(|y| !pa.iter().any(|x| x.nodes == y.nodes)) {
        println!("{:>5}  only in B", y.nodes);
    }
    Ok(bad)
}
