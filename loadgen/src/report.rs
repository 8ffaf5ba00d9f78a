//! The results directory of a sweep: `run.json` (provenance, configuration, every point),
//! `points.csv`, `timeseries.csv`, `events-n<N>.csv` (per transaction, of each point's measured
//! run), plots (`plot.rs`) and a self-contained `index.html` with no scripts. Written again after
//! every point, so an interrupted sweep leaves a readable report of what it finished.

use crate::faults::Window;
use crate::gate::Verdict;
use crate::point::{Counts, Latency, Outcome, Second};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One run's figures (a search probe or the measured run).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// Offered rate (tx/s).
    pub rate: f64,
    /// Seconds of schedule.
    pub duration_s: f64,
    /// Counts.
    pub counts: Counts,
    /// Refusals by reason.
    pub rejected_reasons: BTreeMap<String, u64>,
    /// Accepted tx/s.
    pub accepted_tps: f64,
    /// Committed tx/s.
    pub committed_tps: f64,
    /// Accept latency (ms, from the scheduled send time).
    pub accept_latency_ms: Latency,
    /// Commit latency (ms, from the scheduled send time).
    pub commit_latency_ms: Latency,
    /// Generator lag (ms): how late loadgen sent with a connection free (its own lateness).
    pub send_lag_ms: Latency,
    /// Connection wait (ms): how long transactions waited for a connection the target held.
    pub connection_wait_ms: Latency,
    /// Generator CPU share of the machine.
    pub generator_cpu: f64,
    /// Why this run is not to be trusted (empty: it is).
    pub invalid: Vec<String>,
    /// Whether it met the objective (probes).
    pub meets_objective: bool,
    /// Why not.
    pub why_not: Option<String>,
}

impl RunSummary {
    /// Summarises an outcome and judges it against the objective.
    pub fn of(o: &Outcome, rate: f64, duration_s: f64, slo_p99_ms: f64, slo_committed: f64) -> Self {
        let commit = Latency::of(&o.commit);
        let committable = o.counts.offered.saturating_sub(o.counts.pairs) as f64;
        let why_not = if !o.invalid.is_empty() {
            Some(o.invalid.join("; "))
        } else if commit.p99 > slo_p99_ms {
            Some(format!("commit p99 {:.0} ms > {:.0} ms", commit.p99, slo_p99_ms))
        } else if (o.counts.committed as f64) < slo_committed * committable {
            Some(format!("committed {} < {:.0} % of {} offered", o.counts.committed, slo_committed * 100.0, committable))
        } else {
            None
        };
        RunSummary {
            rate,
            duration_s,
            counts: o.counts.clone(),
            rejected_reasons: o.reasons.clone(),
            accepted_tps: o.accepted_tps,
            committed_tps: o.committed_tps,
            accept_latency_ms: Latency::of(&o.accept),
            commit_latency_ms: commit,
            send_lag_ms: Latency::of(&o.lag),
            connection_wait_ms: Latency::of(&o.wait),
            generator_cpu: o.generator_cpu,
            invalid: o.invalid.clone(),
            meets_objective: why_not.is_none(),
            why_not,
        }
    }
}

/// One node count's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointResult {
    /// Nodes in the federation.
    pub nodes: usize,
    /// ok, failed (gate or errors) or invalid (the measured run is not to be trusted).
    pub status: String,
    /// Why not ok.
    pub reasons: Vec<String>,
    /// What the federation ran on.
    pub fleet: String,
    /// Search probes in order.
    pub probes: Vec<RunSummary>,
    /// Highest offered rate that met the objective (None without a search, or when none did).
    pub max_rate: Option<f64>,
    /// Committed tx/s at that rate.
    pub max_committed_tps: Option<f64>,
    /// The measured run (half of max_rate, or --rate).
    pub measured: Option<RunSummary>,
    /// Per second of the measured run.
    pub seconds: Vec<Second>,
    /// Fault windows of the measured run.
    pub faults: Vec<Window>,
    /// The correctness gate.
    pub gate: Verdict,
    /// Wall time of the point, seconds.
    pub wall_s: f64,
}

/// Published figures drawn beside ours: other hardware, other software, for reference only.
pub struct Reference {
    /// Label.
    pub label: &'static str,
    /// (nodes, writes/s) points.
    pub points: &'static [(f64, f64)],
    /// Source and conditions.
    pub note: &'static str,
}

/// The anchors (sources: ../shared/reference/bigchaindb.md and harnesses.md).
pub const REFERENCES: &[Reference] = &[
    Reference {
        label: "BigchainDB 1.x",
        points: &[(1.0, 800.0)],
        note: "\">800 tx/s received and validated\", one c3.8xlarge (32 vCPU), create_thoughtput.py, MongoDB",
    },
    Reference {
        label: "BigchainDB 2.0",
        points: &[(4.0, 298.0), (4.0, 636.0)],
        note: "BEP-23: 4 Azure F32s v2 (32 vCPU), 765-byte CREATEs, finalized 298 tx/s (default) and 636 tx/s (parallel validation)",
    },
    Reference {
        label: "Cassandra, Netflix 2011",
        points: &[(48.0, 174_373.0), (96.0, 366_828.0), (144.0, 537_172.0), (288.0, 1_099_837.0)],
        note: "client writes/s, m1.xlarge, RF 3, cassandra stress (raw writes, no validation)",
    },
];

/// Files of one sweep.
pub struct ResultsDir {
    /// The directory.
    pub dir: PathBuf,
}

/// Writes `data` to `path` atomically (temp file + rename): a crash never leaves half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn f(v: f64) -> String {
    format!("{v:.1}")
}

impl ResultsDir {
    /// Creates the directory.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("points")).with_context(|| format!("creating the results directory {}", dir.display()))?;
        Ok(ResultsDir { dir: dir.to_path_buf() })
    }

    /// Every file, from `run` (provenance + config) and the finished points.
    pub fn write(&self, run: &Value, points: &[PointResult]) -> Result<()> {
        let mut run = run.clone();
        run["points"] = serde_json::to_value(points)?;
        run["references"] = REFERENCES.iter().map(|r| json!({"label": r.label, "points": r.points, "note": r.note, "hardware": "other hardware, for reference"})).collect();
        write_atomic(&self.dir.join("run.json"), serde_json::to_string_pretty(&run)?.as_bytes())?;

        let mut csv = String::from("nodes,status,max_rate,max_committed_tps,rate,offered,sent,accepted,rejected,lost,committed,conflict_losers,uncommitted,accepted_tps,committed_tps,committed_tps_per_node,accept_p99_ms,commit_p50_ms,commit_p90_ms,commit_p99_ms,commit_max_ms,send_lag_p99_ms,generator_cpu,gate,reasons\n");
        for p in points {
            let m = p.measured.as_ref();
            let g = |x: &dyn Fn(&RunSummary) -> String| m.map(x).unwrap_or_default();
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n",
                p.nodes,
                p.status,
                p.max_rate.map(f).unwrap_or_default(),
                p.max_committed_tps.map(f).unwrap_or_default(),
                g(&|r| f(r.rate)),
                g(&|r| r.counts.offered.to_string()),
                g(&|r| r.counts.sent.to_string()),
                g(&|r| r.counts.accepted.to_string()),
                g(&|r| r.counts.rejected.to_string()),
                g(&|r| r.counts.lost.to_string()),
                g(&|r| r.counts.committed.to_string()),
                g(&|r| r.counts.conflict_losers.to_string()),
                g(&|r| r.counts.uncommitted.to_string()),
                g(&|r| f(r.accepted_tps)),
                g(&|r| f(r.committed_tps)),
                g(&|r| f(r.committed_tps / p.nodes as f64)),
                g(&|r| f(r.accept_latency_ms.p99)),
                g(&|r| f(r.commit_latency_ms.p50)),
                g(&|r| f(r.commit_latency_ms.p90)),
                g(&|r| f(r.commit_latency_ms.p99)),
                g(&|r| f(r.commit_latency_ms.max)),
                g(&|r| f(r.send_lag_ms.p99)),
                g(&|r| format!("{:.3}", r.generator_cpu)),
                if p.gate.passed { "passed" } else { "failed" },
                p.reasons.join("; ").replace('"', "'"),
            ));
        }
        write_atomic(&self.dir.join("points.csv"), csv.as_bytes())?;

        let mut ts = String::from("nodes,t_s,offered,sent,accepted,rejected,committed,accept_p99_ms,commit_p50_ms,commit_p99_ms,fault\n");
        for p in points {
            for s in &p.seconds {
                let fault: Vec<String> = p
                    .faults
                    .iter()
                    .filter(|w| (s.t as f64) < w.end_s && (s.t as f64 + 1.0) > w.start_s)
                    .map(|w| format!("{} {} {}", w.fault.action, w.fault.target, w.fault.node))
                    .collect();
                ts.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{}\n",
                    p.nodes, s.t, s.offered, s.sent, s.accepted, s.rejected, s.committed, f(s.accept_p99_ms), f(s.commit_p50_ms), f(s.commit_p99_ms), fault.join("+")
                ));
            }
        }
        write_atomic(&self.dir.join("timeseries.csv"), ts.as_bytes())?;
        crate::plot::all(&self.dir, points)?;
        write_atomic(&self.dir.join("index.html"), html(&run, points, &self.dir)?.as_bytes())?;
        Ok(())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report's words for the raw verify rate at the end of a sweep, with the drift past ±10 %.
fn raw_at_end(start: f64, end: f64) -> String {
    let moved = crate::provenance::RawVerify::of(start, end).moved().map(|d| {
        format!(" (it moved {:+.0} % during the sweep: the machine's speed was not steady, so points measured at different times are not quite comparable)", d * 100.0)
    });
    format!(" and {end:.0}/s at its end{}", moved.unwrap_or_default())
}

/// The report: inline SVG plots, the points table, each point's verdict, provenance.
fn html(run: &Value, points: &[PointResult], dir: &Path) -> Result<String> {
    let mut h = String::new();
    let title = format!("Cairn loadgen sweep {}", run["run"].as_str().unwrap_or(""));
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#f3f3f3}}td.l{{text-align:left}}.bad{{color:#b00}}.ok{{color:#070}}figure{{margin:1em 0}}svg{{max-width:100%;height:auto}}pre{{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}}</style></head><body>\n",
        esc(&title)
    ));
    h.push_str(&format!("<h1>{}</h1>\n", esc(&title)));
    let m = &run["machine"];
    h.push_str(&format!(
        "<p>Workload: {} {}, {} B CREATEs; objective: commit p99 &le; {} ms and committed &ge; {} % of offered. Machine: {} cores, {} ({} GiB), raw Ed25519 verify {:.0}/s on all cores at the start of this run{}. Fleet: {}. loadgen runs on the same machine unless stated. <b>Accepted</b> = HTTP 202 (durable in the backlog); <b>committed</b> = in a block decided VALID, seen on the node's stream; latency from each transaction's scheduled send time.</p>\n",
        esc(run["config"]["workload"]["workload"].as_str().unwrap_or("")),
        esc(&format!("(transfer share {}, chain depth {}, double-spend share {})", run["config"]["workload"]["transfer_share"], run["config"]["workload"]["chain_depth"], run["config"]["workload"]["double_spend_share"])),
        run["config"]["workload"]["tx_bytes"],
        run["config"]["slo_p99_ms"],
        run["config"]["slo_committed"].as_f64().unwrap_or(0.95) * 100.0,
        m["cores"],
        esc(m["cpu"].as_str().unwrap_or("")),
        m["memory_gib"],
        m["raw_ed25519_verify_per_s_all_cores"].as_f64().unwrap_or(0.0),
        m["raw_ed25519_verify_per_s_at_end"].as_f64().map(|e| raw_at_end(m["raw_ed25519_verify_per_s_all_cores"].as_f64().unwrap_or(0.0), e)).unwrap_or_default(),
        esc(run["config"]["fleet"].as_str().unwrap_or("")),
    ));
    for (file, caption) in [
        ("writes-vs-nodes.svg", "Writes per second versus nodes. Reference figures are other hardware and other software, drawn for orientation only."),
        ("latency.svg", "Commit latency percentiles of each point's measured run."),
    ] {
        if let Ok(svg) = std::fs::read_to_string(dir.join(file)) {
            h.push_str(&format!("<figure>{}<figcaption>{}</figcaption></figure>\n", strip_xml_decl(&svg), esc(caption)));
        }
    }
    h.push_str("<h2>Points</h2>\n<table><tr><th>nodes</th><th>status</th><th>max rate meeting objective</th><th>committed at max</th><th>measured rate</th><th>offered</th><th>accepted</th><th>rejected</th><th>lost</th><th>committed</th><th>accepted tx/s</th><th>committed tx/s</th><th>per node</th><th>commit p50 ms</th><th>p99 ms</th><th>gate</th></tr>\n");
    for p in points {
        let r = p.measured.as_ref();
        let c = |x: &dyn Fn(&RunSummary) -> String| r.map(x).unwrap_or_else(|| "–".into());
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            p.nodes,
            if p.status == "ok" { "ok" } else { "bad" },
            p.status,
            p.max_rate.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into()),
            p.max_committed_tps.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into()),
            c(&|r| format!("{:.0}", r.rate)),
            c(&|r| r.counts.offered.to_string()),
            c(&|r| r.counts.accepted.to_string()),
            c(&|r| r.counts.rejected.to_string()),
            c(&|r| r.counts.lost.to_string()),
            c(&|r| r.counts.committed.to_string()),
            c(&|r| format!("{:.0}", r.accepted_tps)),
            c(&|r| format!("{:.0}", r.committed_tps)),
            c(&|r| format!("{:.0}", r.committed_tps / p.nodes as f64)),
            c(&|r| format!("{:.0}", r.commit_latency_ms.p50)),
            c(&|r| format!("{:.0}", r.commit_latency_ms.p99)),
            if p.gate.passed { "passed" } else { "failed" },
        ));
    }
    h.push_str("</table>\n");
    for p in points {
        h.push_str(&format!("<h3>{} node{} — {}</h3>\n", p.nodes, if p.nodes == 1 { "" } else { "s" }, esc(&p.fleet)));
        if !p.reasons.is_empty() {
            h.push_str(&format!("<p class=\"bad\">{}</p>\n", p.reasons.iter().map(|r| esc(r)).collect::<Vec<_>>().join("<br>")));
        }
        if !p.probes.is_empty() {
            let list: Vec<String> = p.probes.iter().map(|r| format!("{:.0} tx/s → committed {:.0} tx/s, p99 {:.0} ms: {}", r.rate, r.committed_tps, r.commit_latency_ms.p99, r.why_not.as_deref().unwrap_or("meets the objective"))).collect();
            h.push_str(&format!("<p>Search: {}</p>\n", esc(&list.join("; "))));
        }
        for w in &p.faults {
            h.push_str(&format!(
                "<p>Fault: {} {} {} at {:.1} s, healed at {:.1} s, caught up {}{}</p>\n",
                esc(&w.fault.action),
                esc(&w.fault.target),
                w.fault.node,
                w.start_s,
                w.end_s,
                w.recovered_after_s.map(|s| format!("{s:.1} s after the heal")).unwrap_or_else(|| "not within 120 s".into()),
                w.error.as_deref().map(|e| format!(" (error: {})", esc(e))).unwrap_or_default()
            ));
        }
        if let Ok(svg) = std::fs::read_to_string(dir.join(format!("throughput-n{}.svg", p.nodes))) {
            h.push_str(&format!("<figure>{}<figcaption>Per second of the measured run{}.</figcaption></figure>\n", strip_xml_decl(&svg), if p.faults.is_empty() { "" } else { "; shaded: fault windows" }));
        }
    }
    h.push_str(&format!("<h2>Provenance</h2><pre>{}</pre>\n", esc(&serde_json::to_string_pretty(&json!({"run": run["run"], "git": run["git"], "binaries": run["binaries"], "machine": run["machine"], "config": run["config"], "started": run["started"]}))?)));
    h.push_str("<h2>References</h2><ul>\n");
    for r in REFERENCES {
        h.push_str(&format!("<li>{} — {} (other hardware, for reference)</li>\n", esc(r.label), esc(r.note)));
    }
    h.push_str("</ul>\n<p>Files: run.json, points.csv, timeseries.csv, events-n&lt;N&gt;.csv, *.svg, *.png.</p></body></html>\n");
    Ok(h)
}

fn strip_xml_decl(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_the_raw_rate_at_the_end_and_says_when_it_moved_past_ten_percent() {
        assert_eq!(raw_at_end(40_000.0, 42_000.0), " and 42000/s at its end");
        let moved = raw_at_end(35_000.0, 42_000.0);
        assert!(moved.starts_with(" and 42000/s at its end (it moved +20 % during the sweep"), "{moved}");
    }
}
