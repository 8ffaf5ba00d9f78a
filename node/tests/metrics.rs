//! StatsD emission of a real `cairn` process: every datagram captured during a small load is
//! checked against the metric catalogue (name, type, tags, a plain integer value: no `|m`, no
//! packed values), the counters add up to what the HTTP answers said, every metric the load
//! exercises shows up, and the README's table is the catalogue.

mod common;
use cairn::crypto::Keypair;
use cairn::metrics::{Kind, CATALOGUE, PREFIX};
use cairn::tx::{self, OutputRef, Spend};
use common::NodeProc;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// One parsed StatsD line.
#[derive(Debug)]
struct Line {
    name: String,
    value: i64,
    kind: String,
    rate: Option<f64>,
    tags: BTreeMap<String, String>,
}

fn parse(line: &str) -> Result<Line, String> {
    let (bucket, rest) = line.split_once(':').ok_or("no ':'")?;
    let mut parts = rest.split('|');
    let value = parts.next().ok_or("no value")?;
    if value.contains(':') {
        return Err("packed values".into());
    }
    let value: i64 = value.parse().map_err(|_| format!("value {value:?} is not an integer"))?;
    let kind = parts.next().ok_or("no type")?.to_string();
    let (mut rate, mut tags) = (None, BTreeMap::new());
    for p in parts {
        if let Some(r) = p.strip_prefix('@') {
            rate = Some(r.parse().map_err(|_| format!("bad rate {r}"))?);
        } else if let Some(t) = p.strip_prefix('#') {
            for kv in t.split(',') {
                let (k, v) = kv.split_once(':').ok_or(format!("tag {kv:?} has no value"))?;
                tags.insert(k.to_string(), v.to_string());
            }
        } else {
            return Err(format!("unknown segment {p:?}"));
        }
    }
    let name = bucket.strip_prefix(&format!("{PREFIX}.")).ok_or(format!("{bucket} lacks the {PREFIX}. prefix"))?.to_string();
    Ok(Line { name, value, kind, rate, tags })
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Opens the websocket stream with a raw handshake and keeps it open.
fn ws_connect(node: &NodeProc) -> std::net::TcpStream {
    let addr = node.ws.trim_start_matches("ws://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /api/v1/streams/valid_transactions HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101", "websocket upgrade refused");
    s
}

#[test]
fn datagrams_follow_the_catalogue_and_counters_add_up() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(dir.path(), &[("CAIRN_STATSD_HOST", "127.0.0.1"), ("CAIRN_STATSD_PORT", &port), ("CAIRN_STATSD_RATE", "1")]);
    let receiver = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut buf = [0u8; 65536];
        let mut quiet_since = Instant::now();
        // Until nothing arrived for 3 s (the node has stopped and drained).
        while quiet_since.elapsed() < Duration::from_secs(3) {
            if let Ok(n) = sock.recv(&mut buf) {
                assert!(n <= 1400, "datagram of {n} bytes exceeds the MTU budget");
                lines.extend(String::from_utf8(buf[..n].to_vec()).unwrap().lines().map(str::to_string));
                quiet_since = Instant::now();
            }
        }
        lines
    });

    // The load: valid CREATEs, a transfer, a double spend, a tampered and a malformed body,
    // reads, and a websocket client.
    let _ws = ws_connect(&node);
    let k = Keypair::generate();
    let creates: Vec<Value> = (0..40).map(|i| tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], json!({"n": i}), Value::Null)).collect();
    let (mut posted, mut accepted) = (0, 0);
    for c in &creates {
        posted += 1;
        accepted += usize::from(node.post(&body(c), "async").0 == 202);
    }
    node.wait_valid(creates[0]["id"].as_str().unwrap(), Duration::from_secs(10));
    let spend = |to: &Keypair| {
        let c = &creates[0];
        let s = Spend {
            fulfills: OutputRef { txid: c["id"].as_str().unwrap().into(), index: 0 },
            details: cairn::cc::Details::from_json(&c["outputs"][0]["condition"]["details"]).unwrap(),
            owners_before: vec![k.public_b58.clone()],
        };
        tx::build_transfer(&[s], &[(vec![to.public_bytes()], 1)], c["id"].as_str().unwrap(), Value::Null, &[&k])
    };
    posted += 2;
    let t1 = spend(&Keypair::generate());
    accepted += usize::from(node.post(&body(&t1), "commit").0 == 202);
    assert_eq!(node.post(&body(&spend(&Keypair::generate())), "async").0, 400, "double spend");
    let mut tampered = creates[1].clone();
    tampered["metadata"] = json!({"x": 1});
    posted += 2;
    assert_eq!(node.post(&body(&tampered), "async").0, 400);
    assert_eq!(node.post(b"{not json", "async").0, 400);
    for c in &creates {
        node.wait_valid(c["id"].as_str().unwrap(), Duration::from_secs(20));
        assert_eq!(node.get(&format!("/api/v1/transactions/{}", c["id"].as_str().unwrap())).0, 200);
    }
    assert_eq!(accepted, 41);
    std::thread::sleep(Duration::from_millis(1200)); // a backlog-depth gauge and a counter flush
    assert!(node.terminate().success());
    let lines = receiver.join().unwrap();
    assert!(!lines.is_empty(), "no datagram arrived");

    // Every line follows the catalogue.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    let mut reasons = BTreeSet::new();
    for l in &lines {
        assert!(!l.contains("|m|") && !l.ends_with("|m"), "meter type in {l:?}");
        let p = parse(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        let m = CATALOGUE.iter().find(|m| m.name == p.name).unwrap_or_else(|| panic!("{l:?}: {} is not in the catalogue", p.name));
        assert_eq!(p.kind, m.kind.wire(), "{l:?}: type");
        let keys: BTreeSet<&str> = p.tags.keys().map(String::as_str).collect();
        let allowed: BTreeSet<&str> = m.tags.iter().copied().chain(["node", "role"]).collect();
        assert_eq!(keys, allowed, "{l:?}: tags");
        assert_eq!(p.tags["role"], "node");
        assert_eq!(p.tags["node"].len(), 8);
        assert!(p.value >= 0, "{l:?}");
        if m.kind == Kind::Counter {
            *sums.entry(p.name.clone()).or_default() += p.value;
        }
        if let Some(r) = p.rate {
            assert_eq!(r, 1.0, "{l:?}");
        }
        if p.name == "tx.rejected" {
            reasons.insert(p.tags["reason"].clone());
        }
        seen.insert(p.name);
    }
    // Counters add up to what the HTTP answers said.
    assert_eq!(sums.get("tx.received").copied(), Some(posted as i64), "{sums:?}");
    assert_eq!(sums.get("tx.accepted").copied(), Some(accepted as i64), "{sums:?}");
    assert_eq!(sums.get("tx.committed").copied(), Some(accepted as i64), "{sums:?}");
    assert_eq!(sums.get("tx.rejected").copied(), Some(3), "{sums:?}");
    assert_eq!(reasons, ["DoubleSpend", "InvalidHash", "SchemaValidationError"].iter().map(|s| s.to_string()).collect());
    // Every metric this load exercises appeared (requeues and queue drops need other faults).
    let want: BTreeSet<String> = CATALOGUE.iter().map(|m| m.name.to_string()).filter(|n| n != "tx.requeued" && n != "metrics.dropped").collect();
    let missing: Vec<&String> = want.difference(&seen).collect();
    assert!(missing.is_empty(), "not emitted: {missing:?}");
}

#[test]
fn readme_table_is_the_catalogue() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert_eq!(
        cairn::statsd::table_rows(&readme, PREFIX),
        cairn::statsd::catalogue_rows(CATALOGUE),
        "README's metric table must list the catalogue in order (name, type)"
    );
}

#[test]
fn no_listener_and_rate_zero_change_nothing() {
    // A port nobody listens on, and metrics off: both nodes serve and commit the same.
    let spare = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    for env in [vec![("CAIRN_STATSD_HOST", "127.0.0.1"), ("CAIRN_STATSD_PORT", spare.as_str()), ("CAIRN_STATSD_RATE", "1")], vec![("CAIRN_STATSD_RATE", "0")]] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeProc::start(dir.path(), &env);
        let k = Keypair::generate();
        let t = tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], json!({"n": 1}), Value::Null);
        assert_eq!(node.post(&body(&t), "commit").0, 202, "{env:?}");
        assert!(node.terminate().success(), "{env:?}: clean shutdown");
    }
}
