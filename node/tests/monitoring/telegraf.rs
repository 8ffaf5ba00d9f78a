//! A stand-in for Telegraf's statsd input (v1.39.3, `plugins/inputs/statsd`), as configured in
//! `monitor/telegraf/telegraf.conf`: it parses lines and aggregates them per interval exactly as
//! Telegraf does, and writes the points Telegraf would write to InfluxDB. Telegraf itself cannot
//! run on this machine; its own test vectors (statsd_test.go) pin this re-implementation below.
//!
//! Rules reproduced (datadog_extensions = true, metric_separator "_", delete_* = true):
//! `|#k:v` tags are taken out of the line first; `bucket:value|type[|@rate]` follows, with more
//! `:value|type` parts allowed; a part without `|` or an unknown type drops the line (logged as
//! an error); the measurement is the bucket up to the first `,` with `.` → `_`, the rest are
//! Influx-style tags; `metric_type` tag; counters are int64 sums (`value / rate` truncated),
//! gauges the last float, timings keep every value (added `int(1/rate)` times) and give mean,
//! median, population stddev, sum, upper, lower (float), count (int), `<P>_percentile`
//! (nearest rank: sorted[int(len·P/100)]); the agent adds `host` unless the line has one.

use std::collections::{BTreeMap, BTreeSet};

/// Series identity: measurement and tags.
type Series = (String, BTreeMap<String, String>);

/// Telegraf's statsd cache between two flushes.
#[derive(Default)]
pub struct StatsdInput {
    /// `percentiles` of telegraf.conf.
    pub percentiles: Vec<f64>,
    counters: BTreeMap<Series, i64>,
    gauges: BTreeMap<Series, f64>,
    sets: BTreeMap<Series, BTreeSet<String>>,
    timings: BTreeMap<Series, Vec<f64>>,
    /// Lines Telegraf would have refused, with the error it logs.
    pub errors: Vec<String>,
}

/// `%v` of a Go float64 as Telegraf formats percentile names (50 → "50", 99.9 → "99.9").
fn go_float(p: f64) -> String {
    if p.fract() == 0.0 { format!("{}", p as i64) } else { format!("{p}") }
}

impl StatsdInput {
    /// A cache computing these percentiles for timings.
    pub fn new(percentiles: Vec<f64>) -> Self {
        StatsdInput { percentiles, ..Default::default() }
    }

    /// Parses one line (statsd.go `parseStatsdLine`); a refused line is recorded in `errors`.
    pub fn line(&mut self, line: &str) {
        if let Err(e) = self.parse(line) {
            self.errors.push(format!("{e}: {line}"));
        }
    }

    fn parse(&mut self, line: &str) -> Result<(), String> {
        let mut line_tags = BTreeMap::new();
        let mut kept = Vec::new();
        for seg in line.split('|') {
            if let Some(tags) = seg.strip_prefix('#') {
                for t in tags.split(',') {
                    match t.split_once(':') {
                        Some((k, v)) => line_tags.insert(k.to_string(), v.to_string()),
                        None => line_tags.insert(t.to_string(), "true".to_string()),
                    };
                }
            } else if seg.starts_with("c:") {
                // container id segment: dropped (datadog_keep_container_tag = false)
            } else {
                kept.push(seg);
            }
        }
        let line = kept.join("|");
        let mut bits = line.split(':');
        let bucket = bits.next().unwrap_or_default();
        let parts: Vec<&str> = bits.collect();
        if parts.is_empty() {
            return Err("Splitting ':', unable to parse metric".into());
        }
        for bit in parts {
            let pipes: Vec<&str> = bit.split('|').collect();
            if pipes.len() < 2 {
                return Err("Splitting '|', unable to parse metric".into());
            }
            let rate = pipes.get(2).and_then(|s| s.strip_prefix('@')).and_then(|r| r.parse::<f64>().ok()).unwrap_or(0.0);
            let kind = match pipes[1] {
                k @ ("g" | "c" | "s" | "ms" | "h") => k,
                "d" => return Ok(()), // datadog_distributions = false: ignored
                other => return Err(format!("Metric type {other:?} unsupported")),
            };
            let (name, mut tags) = Self::name(bucket);
            tags.insert("metric_type".into(), match kind { "c" => "counter", "g" => "gauge", "s" => "set", "ms" => "timing", _ => "histogram" }.into());
            tags.extend(line_tags.clone());
            let series = (name, tags);
            let raw = pipes[0];
            match kind {
                "c" => {
                    let mut v: i64 = match raw.parse::<i64>() {
                        Ok(v) => v,
                        Err(_) => raw.parse::<f64>().map_err(|_| "Parsing value to int64, unable to parse metric")? as i64,
                    };
                    if rate != 0.0 {
                        v = (v as f64 / rate) as i64;
                    }
                    *self.counters.entry(series).or_default() += v;
                }
                "g" => {
                    let v: f64 = raw.parse().map_err(|_| "Parsing value to float64, unable to parse metric")?;
                    let additive = raw.starts_with('+') || raw.starts_with('-');
                    let g = self.gauges.entry(series).or_insert(0.0);
                    if additive { *g += v } else { *g = v }
                }
                "s" => {
                    self.sets.entry(series).or_default().insert(raw.to_string());
                }
                _ => {
                    if raw.starts_with('+') || raw.starts_with('-') {
                        return Err("+- values are only supported for gauges & counters".into());
                    }
                    let v: f64 = raw.parse().map_err(|_| "Parsing value to float64, unable to parse metric")?;
                    let times = if rate > 0.0 { (1.0 / rate) as usize } else { 1 };
                    let t = self.timings.entry(series).or_default();
                    t.extend(std::iter::repeat_n(v, times));
                }
            }
        }
        Ok(())
    }

    /// The default template `measurement*` with separator `_`, after Influx-style tags.
    fn name(bucket: &str) -> (String, BTreeMap<String, String>) {
        let mut parts = bucket.split(',');
        let name = parts.next().unwrap_or_default().replace('.', "_");
        let tags = parts.filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (name, tags)
    }

    /// The points of one flush as InfluxDB line protocol (timestamp `ts_ns`), the cache cleared.
    pub fn flush(&mut self, agent_host: &str, ts_ns: u128) -> Vec<String> {
        let mut out = Vec::new();
        let mut point = |(name, mut tags): Series, fields: Vec<(String, String)>| {
            tags.entry("host".into()).or_insert_with(|| agent_host.to_string());
            let tags: String = tags.iter().map(|(k, v)| format!(",{}={}", escape(k), escape(v))).collect();
            let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{}={v}", escape(&k))).collect();
            out.push(format!("{}{tags} {} {ts_ns}", escape(&name), fields.join(",")));
        };
        for (s, v) in std::mem::take(&mut self.counters) {
            point(s, vec![("value".into(), format!("{v}i"))]);
        }
        for (s, v) in std::mem::take(&mut self.gauges) {
            point(s, vec![("value".into(), float(v))]);
        }
        for (s, v) in std::mem::take(&mut self.sets) {
            point(s, vec![("value".into(), format!("{}i", v.len()))]);
        }
        for (s, values) in std::mem::take(&mut self.timings) {
            let fields = self.timing_fields(&values);
            point(s, fields);
        }
        out
    }

    /// Telegraf's runningStats over one interval. Telegraf keeps at most `percentile_limit`
    /// (1,000) values for percentiles and the median, replacing at random beyond that; this
    /// keeps all, so above 1,000 values per interval the percentiles are exact where Telegraf's
    /// are sampled (same fields, same types).
    fn timing_fields(&self, values: &[f64]) -> Vec<(String, String)> {
        let n = values.len() as f64;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let sum: f64 = values.iter().sum();
        let mean = sum / n;
        let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let c = sorted.len();
        let median = if c.is_multiple_of(2) { (sorted[c / 2 - 1] + sorted[c / 2]) / 2.0 } else { sorted[c / 2] };
        let mut f = vec![
            ("mean".to_string(), float(mean)),
            ("median".to_string(), float(median)),
            ("stddev".to_string(), float(variance.sqrt())),
            ("sum".to_string(), float(sum)),
            ("upper".to_string(), float(sorted[c - 1])),
            ("lower".to_string(), float(sorted[0])),
            ("count".to_string(), format!("{c}i")),
        ];
        for p in &self.percentiles {
            let i = ((c as f64 * p.min(100.0) / 100.0) as usize).min(c - 1);
            f.push((format!("{}_percentile", go_float(*p)), float(sorted[i])));
        }
        f
    }
}

/// A float field as line protocol writes it (always with a decimal part, so InfluxDB keeps
/// the field's type float across points).
fn float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.1}") } else { format!("{v}") }
}

fn escape(s: &str) -> String {
    s.replace(' ', "\\ ").replace(',', "\\,").replace('=', "\\=")
}

/// Points shaped like Telegraf's cpu, mem, system, net, disk and diskio inputs, read from this
/// machine's /proc (field names and types of those inputs; values real, sampled once).
pub fn host_points(host: &str, ts_ns: u128) -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut out = Vec::new();
    // cpu: usage_* percentages since boot (Telegraf uses the delta between gathers).
    if let Some(l) = read("/proc/stat").lines().find(|l| l.starts_with("cpu ")) {
        let v: Vec<f64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        let total: f64 = v.iter().take(8).sum::<f64>().max(1.0);
        let pct = |x: f64| float(100.0 * x / total);
        let idle = v[3] + v[4];
        out.push(format!(
            "cpu,cpu=cpu-total,host={host} usage_user={},usage_system={},usage_idle={},usage_iowait={},usage_active={} {ts_ns}",
            pct(v[0]), pct(v[2]), pct(v[3]), pct(v[4]), pct(total - idle)
        ));
    }
    let mem: BTreeMap<String, u64> = read("/proc/meminfo")
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.split_whitespace().next()?.parse::<u64>().ok()? * 1024))
        })
        .collect();
    let (total, avail) = (mem["MemTotal"], mem["MemAvailable"]);
    out.push(format!(
        "mem,host={host} total={total}i,available={avail}i,used={}i,used_percent={},available_percent={} {ts_ns}",
        total - avail, float(100.0 * (total - avail) as f64 / total as f64), float(100.0 * avail as f64 / total as f64)
    ));
    let load: Vec<String> = read("/proc/loadavg").split_whitespace().take(3).map(String::from).collect();
    out.push(format!(
        "system,host={host} load1={},load5={},load15={},n_cpus={}i {ts_ns}",
        float(load[0].parse().unwrap_or(0.0)), float(load[1].parse().unwrap_or(0.0)), float(load[2].parse().unwrap_or(0.0)),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    for l in read("/proc/net/dev").lines().skip(2) {
        let Some((ifname, rest)) = l.split_once(':') else { continue };
        let v: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if v.len() >= 9 {
            out.push(format!("net,host={host},interface={} bytes_recv={}i,bytes_sent={}i,packets_recv={}i,packets_sent={}i {ts_ns}", ifname.trim(), v[0], v[8], v[1], v[9]));
        }
    }
    for l in read("/proc/diskstats").lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 10 && !f[2].starts_with("loop") && !f[2].starts_with("ram") {
            let sectors = |i: usize| f[i].parse::<u64>().unwrap_or(0) * 512;
            out.push(format!("diskio,host={host},name={} read_bytes={}i,write_bytes={}i {ts_ns}", f[2], sectors(5), sectors(9)));
        }
    }
    let df = std::process::Command::new("df").args(["-Pk", "/"]).output().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    if let Some(l) = df.lines().nth(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let kb = |i: usize| f[i].parse::<u64>().unwrap_or(0) * 1024;
        let (t, u) = (kb(1), kb(2));
        out.push(format!("disk,host={host},path=/,device={} total={t}i,used={u}i,free={}i,used_percent={} {ts_ns}", escape(f[0]), kb(3), float(100.0 * u as f64 / t.max(1) as f64)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(point: &str) -> BTreeMap<String, String> {
        let f = point.split(' ').nth(1).unwrap();
        f.split(',').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// statsd_test.go: `test.timing` 1,11,1,1,1 ms, percentiles [90] → 90_percentile=11, count=5,
    /// lower=1, mean=3, median=1, stddev=4, sum=15, upper=11.
    #[test]
    fn telegraf_timing_vector() {
        let mut s = StatsdInput::new(vec![90.0]);
        for v in [1, 11, 1, 1, 1] {
            s.line(&format!("test.timing:{v}|ms"));
        }
        let p = s.flush("h", 1);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("test_timing,host=h,metric_type=timing "), "{}", p[0]);
        let f = fields(&p[0]);
        let want = [("90_percentile", "11.0"), ("count", "5i"), ("lower", "1.0"), ("mean", "3.0"), ("median", "1.0"), ("stddev", "4.0"), ("sum", "15.0"), ("upper", "11.0")];
        assert_eq!(f, want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        assert!(s.flush("h", 2).is_empty(), "delete_timings: the cache is cleared");
    }

    /// statsd_test.go: names keep dashes, dots become `_`; DogStatsD tags (incl. a bare one →
    /// `true`); sample rates; packed values and `|m` are refused as Telegraf refuses them.
    #[test]
    fn telegraf_parsing_vectors() {
        let mut s = StatsdInput::new(vec![]);
        s.line("valid.foo-bar:11|c");
        s.line("my_counter:1|c|#host:localhost,environment:prod");
        s.line("my_gauge:10.1|g|#live");
        s.line("sampled:1|c|@0.1");
        s.line("users.current,service=payroll,region=us-west:32|g");
        s.line("packed:1:2:3|ms");
        s.line("meter:5|m");
        assert_eq!(s.errors.len(), 2, "{:?}", s.errors);
        assert!(s.errors[0].starts_with("Splitting '|'"));
        assert!(s.errors[1].starts_with("Metric type \"m\" unsupported"));
        let p = s.flush("agent", 7);
        let want = [
            "my_counter,environment=prod,host=localhost,metric_type=counter value=1i 7",
            "sampled,host=agent,metric_type=counter value=10i 7",
            "valid_foo-bar,host=agent,metric_type=counter value=11i 7",
            "my_gauge,host=agent,live=true,metric_type=gauge value=10.1 7",
            "users_current,host=agent,metric_type=gauge,region=us-west,service=payroll value=32.0 7",
        ];
        assert_eq!(p, want);
    }

    #[test]
    fn percentile_names_follow_go_formatting() {
        let mut s = StatsdInput::new(vec![50.0, 90.0, 99.0, 99.9]);
        for v in 1..=400 {
            s.line(&format!("t:{v}|ms|@0.5"));
        }
        let f = fields(&s.flush("h", 1)[0]);
        assert_eq!(f["count"], "800i", "a value sampled at 0.5 counts twice");
        // sorted[int(800·P/100)]: 50 → index 400 → 201; 99.9 → index 799 → 400.
        assert_eq!((f["50_percentile"].as_str(), f["99.9_percentile"].as_str()), ("201.0", "400.0"));
    }
}
