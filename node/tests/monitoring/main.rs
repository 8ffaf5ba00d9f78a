//! The monitor stack up to the boundary this machine allows: a real node and a real loadgen
//! send StatsD to a Telegraf stand-in (`telegraf.rs`, Telegraf's statsd rules, pinned by its
//! test vectors), which writes Telegraf-shaped points into a real InfluxDB (Debian `influxd`);
//! then every query of every panel of every dashboard in `monitor/grafana/dashboards` runs
//! against it with Grafana's macros substituted, and must answer without error and with data.
//! The static checks of the stack's files (schema, Telegraf options, compose) run too.
//! Telegraf, Grafana and the containers themselves are not run here (see monitor/README.md).

#[path = "../common/mod.rs"]
mod common;
mod telegraf;

use cairn::metrics::CATALOGUE as NODE_CATALOGUE;
use cairn_loadgen::metrics::{CATALOGUE as LOADGEN_CATALOGUE, PREFIX as LOADGEN_PREFIX};
use common::{free_port, require_external, NodeProc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use telegraf::StatsdInput;

const RUN_ID: &str = "monitor-test";
const LOADGEN_TXS: usize = 3_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Skips loudly, or fails under CAIRN_REQUIRE_EXTERNAL=1.
fn missing(test: &str, what: &str) {
    assert!(!require_external(), "CAIRN_REQUIRE_EXTERNAL=1 but {what}");
    eprintln!("\n*** SKIP {test}: {what} ***\n");
}

fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A real InfluxDB 1.x on loopback with its data in a temporary directory.
struct Influx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Influx {
    fn start(influxd: &Path) -> Influx {
        let dir = tempfile::tempdir().unwrap();
        let (http, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n[http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http}\"\n  auth-enabled = false\n  log-enabled = false\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("influxd.log")).unwrap();
        let child = Command::new(influxd)
            .args(["run", "-config"])
            .arg(dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let influx = Influx { child, url: format!("http://127.0.0.1:{http}"), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{}/ping", influx.url)).call().map(|r| r.status()).ok() != Some(204) {
            assert!(Instant::now() < deadline, "influxd did not answer /ping within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        influx.query("CREATE DATABASE telegraf");
        influx
    }

}

/// Writes line protocol as Telegraf's influxdb output does; a refusal fails the test.
fn write_points(url: &str, lines: &[String]) {
    {
        if lines.is_empty() {
            return;
        }
        let r = ureq::post(&format!("{url}/write?db=telegraf&precision=ns")).send_string(&lines.join("\n"));
        if let Err(e) = r {
            let body = match e {
                ureq::Error::Status(_, r) => r.into_string().unwrap_or_default(),
                other => other.to_string(),
            };
            panic!("InfluxDB refused Telegraf-shaped points: {body}\nfirst line: {}", lines[0]);
        }
    }

}

impl Influx {
    /// Runs InfluxQL; returns the HTTP status and body.
    fn query(&self, q: &str) -> (u16, Value) {
        let r = ureq::post(&format!("{}/query", self.url)).send_form(&[("db", "telegraf"), ("epoch", "ms"), ("q", q)]);
        match r {
            Ok(r) => (r.status(), r.into_json().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("InfluxDB query failed: {e}"),
        }
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stand-in's listener: captures every line, aggregates per `interval`, writes to InfluxDB
/// (plus host-input points), until stopped; returns the raw lines and Telegraf's parse errors.
fn telegraf_standin(sock: UdpSocket, influx_url: String, percentiles: Vec<f64>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Vec<String>, Vec<String>)> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut input = StatsdInput::new(percentiles);
        let mut lines = Vec::new();
        let mut buf = [0u8; 65536];
        let mut next = Instant::now() + Duration::from_secs(1);
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                for l in String::from_utf8_lossy(&buf[..n]).lines() {
                    input.line(l);
                    lines.push(l.to_string());
                }
            }
            let stopping = stop.load(Ordering::SeqCst);
            if Instant::now() >= next || stopping {
                let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
                let mut points = input.flush("cairn-test-monitor", ts);
                points.extend(telegraf::host_points("cairn-test-monitor", ts));
                write_points(&influx_url, &points);
                next += Duration::from_secs(1);
            }
            if stopping {
                return (lines, input.errors);
            }
        }
    })
}

/// `percentiles` of monitor/telegraf/telegraf.conf (the stand-in computes the same fields).
fn telegraf_percentiles() -> Vec<f64> {
    let conf: toml::Value = toml::from_str(&std::fs::read_to_string(repo().join("monitor/telegraf/telegraf.conf")).unwrap()).unwrap();
    conf["inputs"]["statsd"][0]["percentiles"].as_array().unwrap().iter().map(|p| p.as_float().unwrap()).collect()
}

/// Panel targets allowed to come back empty under this load, and why. Anything else empty
/// fails, and so does an entry here that has data (the list must stay true).
const MAY_BE_EMPTY: &[(&str, &str, &str, &str)] = &[
    ("overview.json", "Requeued tx/s", "A", "needs an INVALID block (node/tests/invalid_blocks.rs makes them)"),
    ("node.json", "Applied height and requeued tx/s", "B", "needs an INVALID block"),
    ("overview.json", "Metric lines dropped per second", "A", "needs a full metrics queue"),
    ("node.json", "Metric lines dropped per second", "A", "needs a full metrics queue"),
    ("load-test.json", "Rejected tx/s by reason (loadgen)", "A", "loadgen sends only valid CREATEs (conflicting workloads: issue 14)"),
];

fn walk<'a>(panels: &'a [Value], out: &mut Vec<&'a Value>) {
    for p in panels {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            walk(inner, out);
        }
    }
}

/// Grafana's InfluxQL interpolation for a raw query: template variables first (a single
/// value as is; `=~ /^$v$/` with several values becomes `(a|b)`), then `$timeFilter`,
/// `$__interval_ms`, `$__interval`. `fill(...)` becomes `fill(none)` so that only real points
/// count as data.
fn interpolate(q: &str, vars: &BTreeMap<String, Vec<String>>, from_ms: u128, to_ms: u128) -> String {
    let mut q = q.to_string();
    for (name, values) in vars {
        let v = if values.len() == 1 { values[0].clone() } else { format!("({})", values.join("|")) };
        q = q.replace(&format!("${{{name}}}"), &v).replace(&format!("${name}"), &v);
    }
    q = q.replace("$timeFilter", &format!("time >= {from_ms}ms and time <= {to_ms}ms"));
    q = q.replace("$__interval_ms", "1000").replace("$__interval", "1s").replace("$interval", "1s");
    let re_fill = q.find("fill(").map(|i| (i, q[i..].find(')').unwrap() + i));
    if let Some((a, b)) = re_fill {
        q.replace_range(a..=b, "fill(none)");
    }
    q
}

/// Non-null values in an InfluxDB answer, or the error it reported.
fn points(body: &Value) -> Result<usize, String> {
    if let Some(e) = body.get("error") {
        return Err(e.to_string());
    }
    let mut n = 0;
    for r in body["results"].as_array().ok_or("no results")? {
        if let Some(e) = r.get("error") {
            return Err(e.to_string());
        }
        for s in r["series"].as_array().map(Vec::as_slice).unwrap_or_default() {
            for row in s["values"].as_array().unwrap() {
                n += row.as_array().unwrap()[1..].iter().filter(|v| !v.is_null()).count();
            }
        }
    }
    Ok(n)
}

fn parse_line(l: &str) -> (String, String, String, BTreeMap<String, String>) {
    let (bucket, rest) = l.split_once(':').unwrap_or_else(|| panic!("{l:?}: no ':'"));
    let mut parts = rest.split('|');
    let value = parts.next().unwrap().to_string();
    let kind = parts.next().unwrap_or_else(|| panic!("{l:?}: no type")).to_string();
    let tags = parts
        .filter_map(|p| p.strip_prefix('#'))
        .flat_map(|t| t.split(','))
        .map(|kv| kv.split_once(':').unwrap_or_else(|| panic!("{l:?}: tag without value")))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (bucket.to_string(), value, kind, tags)
}

#[test]
fn every_dashboard_panel_shows_a_live_load_test() {
    let test = "every_dashboard_panel_shows_a_live_load_test";
    let Some(influxd) = find_binary("influxd") else {
        return missing(test, "no influxd (Debian package influxdb: apt-get install influxdb)");
    };
    let loadgen = Path::new(env!("CARGO_BIN_EXE_cairn")).with_file_name("loadgen");
    assert!(loadgen.is_file(), "{} is missing: build the workspace (cargo build --workspace) before this test", loadgen.display());
    let influx = Influx::start(&influxd);
    let from_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() - 60_000;

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let standin = telegraf_standin(sock, influx.url.clone(), telegraf_percentiles(), stop.clone());

    // The load: loadgen at 1,000 tx/s for 3 s with --statsd, plus refusals of each kind posted
    // straight to the node (its rejected-by-reason panels).
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(dir.path(), &[("CAIRN_STATSD_HOST", "127.0.0.1"), ("CAIRN_STATSD_PORT", &port), ("CAIRN_STATSD_RATE", "1")]);
    assert_eq!(node.post(b"{not json", "async").0, 400);
    let out = Command::new(&loadgen)
        .args(["--target", &node.api, "--count", &LOADGEN_TXS.to_string(), "--rate", "1000", "--concurrency", "16"])
        .args(["--statsd", &format!("127.0.0.1:{port}"), "--run-id", RUN_ID, "--commit-timeout", "60"])
        .output()
        .unwrap();
    assert!(out.status.success(), "loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.post(b"[]", "async").0, 400);
    std::thread::sleep(Duration::from_millis(1_500)); // gauges and counters of the last second
    assert!(node.terminate().success());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (lines, errors) = standin.join().unwrap();
    let to_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 1_000;

    // Telegraf accepts every line both programs sent.
    assert!(errors.is_empty(), "Telegraf would refuse {} lines, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);

    // loadgen's lines follow its catalogue and add up to the run.
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for l in lines.iter().filter(|l| l.starts_with(&format!("{LOADGEN_PREFIX}."))) {
        let (bucket, value, kind, tags) = parse_line(l);
        let name = &bucket[LOADGEN_PREFIX.len() + 1..];
        let m = LOADGEN_CATALOGUE.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{l:?}: {name} is not in loadgen's catalogue"));
        assert_eq!(kind, m.kind.wire(), "{l:?}");
        let keys: BTreeSet<&str> = tags.keys().map(String::as_str).collect();
        assert_eq!(keys, m.tags.iter().copied().chain(["run"]).collect(), "{l:?}: tags");
        assert_eq!(tags["run"], RUN_ID);
        let v: i64 = value.parse().unwrap_or_else(|_| panic!("{l:?}: value is not an integer"));
        *sums.entry(name.to_string()).or_default() += v;
        seen.insert(name.to_string());
    }
    for counter in ["tx.offered", "tx.sent", "tx.accepted", "tx.committed"] {
        assert_eq!(sums.get(counter).copied(), Some(LOADGEN_TXS as i64), "loadgen {counter}: {sums:?}");
    }
    let want: BTreeSet<String> = LOADGEN_CATALOGUE.iter().map(|m| m.name.to_string()).filter(|n| n != "tx.rejected").collect();
    assert!(want.is_subset(&seen), "loadgen did not send {:?}", want.difference(&seen).collect::<Vec<_>>());

    // Every query of every panel of every dashboard, as Grafana would run it.
    let mut measurements_queried = BTreeSet::new();
    let mut failures = Vec::new();
    let mut may_be_empty_used = BTreeSet::new();
    let mut ran = 0;
    let dashboards = repo().join("monitor/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dashboards).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 3, "three dashboards in {}", dashboards.display());
    for f in &files {
        let file = f.file_name().unwrap().to_str().unwrap();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let mut vars = BTreeMap::new();
        for v in d["templating"]["list"].as_array().unwrap() {
            let (status, body) = influx.query(v["query"].as_str().unwrap());
            assert_eq!(status, 200, "{file}: variable {}: {body}", v["name"]);
            let values: Vec<String> = body["results"][0]["series"][0]["values"]
                .as_array()
                .map(|vs| vs.iter().map(|kv| kv[1].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            assert!(!values.is_empty(), "{file}: variable ${} has no values ({})", v["name"], v["query"]);
            // Single-value variables show one choice: the run of this test, or any node.
            let pick = if v["name"] == "run" { RUN_ID.to_string() } else { values[0].clone() };
            assert!(values.contains(&pick), "{file}: ${} offers {values:?}", v["name"]);
            vars.insert(v["name"].as_str().unwrap().to_string(), vec![pick]);
        }
        let mut panels = Vec::new();
        walk(d["panels"].as_array().unwrap(), &mut panels);
        for p in panels.into_iter().filter(|p| p["type"] != "row") {
            let title = p["title"].as_str().unwrap();
            for t in p["targets"].as_array().unwrap() {
                let refid = t["refId"].as_str().unwrap();
                let raw = t["query"].as_str().unwrap();
                for m in raw.split("FROM \"").skip(1) {
                    measurements_queried.insert(m.split('"').next().unwrap().to_string());
                }
                let q = interpolate(raw, &vars, from_ms, to_ms);
                let (status, body) = influx.query(&q);
                ran += 1;
                let allowed = MAY_BE_EMPTY.iter().find(|(df, pt, r, _)| *df == file && *pt == title && *r == refid);
                match (status, points(&body), allowed) {
                    (200, Ok(0), Some(_)) => {
                        may_be_empty_used.insert((file.to_string(), title.to_string(), refid.to_string()));
                    }
                    (200, Ok(0), None) => failures.push(format!("{file} / {title} / {refid}: no data\n    {q}")),
                    (200, Ok(_), Some((_, _, _, why))) => failures.push(format!("{file} / {title} / {refid}: has data, but is listed as empty ({why}): update MAY_BE_EMPTY")),
                    (200, Ok(_), None) => {}
                    (s, Err(e), _) => failures.push(format!("{file} / {title} / {refid}: HTTP {s}: {e}\n    {q}")),
                    (s, Ok(_), _) => failures.push(format!("{file} / {title} / {refid}: HTTP {s}: {body}\n    {q}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {ran} panel queries failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(may_be_empty_used.len(), MAY_BE_EMPTY.len(), "an entry of MAY_BE_EMPTY names no panel");
    eprintln!("{ran} panel queries in {} dashboards answered with data ({} allowed empty)", files.len(), MAY_BE_EMPTY.len());

    // No metric is invisible and no panel reads a measurement nobody writes.
    let host_inputs = ["cpu", "mem", "system", "net", "disk", "diskio"];
    let emitted: BTreeSet<String> = NODE_CATALOGUE
        .iter()
        .map(|m| format!("cairn_{}", m.name.replace('.', "_")))
        .chain(LOADGEN_CATALOGUE.iter().map(|m| format!("{LOADGEN_PREFIX}_{}", m.name.replace('.', "_"))))
        .collect();
    let unseen: Vec<&String> = emitted.difference(&measurements_queried).collect();
    assert!(unseen.is_empty(), "metrics no dashboard shows: {unseen:?}");
    let unknown: Vec<&String> = measurements_queried.iter().filter(|m| !emitted.contains(*m) && !host_inputs.contains(&m.as_str())).collect();
    assert!(unknown.is_empty(), "dashboards read measurements nobody writes: {unknown:?}");
}

#[test]
fn monitor_files_pass_static_checks() {
    let test = "monitor_files_pass_static_checks";
    let Some(compose) = find_binary("docker-compose") else {
        return missing(test, "no docker-compose (Debian package docker-compose) to validate monitor/docker-compose.yml");
    };
    let python = repo().join(".venv/bin/python");
    let has_modules = python.is_file()
        && Command::new(&python).args(["-c", "import jsonschema, yaml"]).status().is_ok_and(|s| s.success());
    if !has_modules {
        return missing(test, "no .venv with jsonschema and pyyaml (run scripts/test.sh, which installs scripts/requirements-test.txt)");
    }
    let out = Command::new(&python).arg(repo().join("monitor/tests/check_files.py")).arg(&compose).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("all checks passed"), "{text}");
}
