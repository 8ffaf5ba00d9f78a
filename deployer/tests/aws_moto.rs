//! The deployer against a real EC2 API: a moto server on loopback (one per test, so tests run
//! in parallel without resets), driven through the `deployer` binary exactly as a user runs
//! it, and checked with an independent client (boto3, `ec2_inventory.py`), never with the
//! deployer's own code. moto's public addresses are never dialled: every test uses
//! `--provision-only` (no SSH) and the deployer's own VPC.

mod common;
use common::{moto, repo, Shell};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::AMI;
const CIDR: &str = "203.0.113.7/32";

fn count(inv: &Value, kind: &str) -> usize {
    inv[kind].as_array().unwrap().len()
}

fn total(inv: &Value) -> usize {
    inv.as_object().unwrap().values().map(|v| v.as_array().unwrap().len()).sum()
}

fn up_args<'a>(name: &'a str, nodes: &'a str) -> Vec<&'a str> {
    vec!["up", "--name", name, "--nodes", nodes, "--provision-only", "--yes", "--allow-cidr", CIDR, "--ami", AMI, "--instance-type", "c5.xlarge", "--connect", "private"]
}

#[test]
fn up_32_creates_exactly_the_expected_resources_and_down_leaves_nothing() {
    let Some(m) = moto() else { return };
    let sh = Shell::new(&m);
    let (code, out, err) = sh.run(&up_args("big", "32"));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("estimated cost") && out.contains("32 x c5.xlarge"), "{out}");
    let inv = sh.inventory(Some("big"));

    // 32 nodes + 1 monitor, each (role, index) once, all tagged and hardened.
    let inst = inv["instances"].as_array().unwrap();
    assert_eq!(inst.len(), 33, "{inv}");
    let mut seen: Vec<(String, String)> = inst.iter().map(|i| (i["tags"]["cairn:role"].as_str().unwrap().into(), i["tags"]["cairn:index"].as_str().unwrap().into())).collect();
    seen.sort();
    let mut want: Vec<(String, String)> = (0..32).map(|i| ("node".to_string(), i.to_string())).collect();
    want.push(("monitor".into(), "0".into()));
    want.sort();
    assert_eq!(seen, want);
    let vpc = inv["vpcs"][0]["id"].as_str().unwrap();
    let sg = inv["security_groups"][0]["id"].as_str().unwrap();
    let subnet = inv["subnets"][0]["id"].as_str().unwrap();
    let rec = sh.record("big");
    for i in inst {
        assert_eq!(i["tags"]["cairn:cluster"], "big");
        assert!(i["tags"]["cairn:expires"].as_str().unwrap().ends_with('Z'));
        assert_eq!(i["subnet"], subnet);
        assert_eq!(i["security_groups"], serde_json::json!([sg]));
        assert_eq!(i["http_tokens"], "required", "IMDSv2 must be required");
        assert_eq!(i["key_name"], "cairn-big");
        assert_eq!(i["type"], if i["tags"]["cairn:role"] == "monitor" { "t3.medium" } else { "c5.xlarge" });
        assert!(i["private_ip"].as_str().unwrap().starts_with("10.77.0."), "{i}");
        assert!(i["public_ip"].is_null(), "--connect private launches without public addresses: {i}");
        // The host key in the user-data is the one the deployer pinned for that host.
        assert!(i["user_data_has_private_key"].as_bool().unwrap());
        let host = rec["nodes"].as_sequence().unwrap().iter().find(|h| h["instance_id"].as_str() == i["id"].as_str()).expect("every instance is in the record");
        assert_eq!(host["host_key"].as_str(), i["host_key"].as_str(), "pinned host key differs from the one sent in user-data");
        assert_eq!(host["private_ip"].as_str(), i["private_ip"].as_str());
        assert_eq!(host["state"].as_str(), Some("provisioned"));
    }
    let known_hosts = std::fs::read_to_string(sh.clusters().join("big/known_hosts")).unwrap();
    assert_eq!(known_hosts.lines().count(), 33, "{known_hosts}");
    for i in inst {
        let line = format!("{} {}", i["private_ip"].as_str().unwrap(), i["host_key"].as_str().unwrap());
        assert!(known_hosts.lines().any(|l| l == line), "known_hosts lacks {line}");
    }

    // Network: one of each, wired together.
    for kind in ["vpcs", "subnets", "internet_gateways", "route_tables", "security_groups", "key_pairs"] {
        assert_eq!(count(&inv, kind), 1, "{kind}: {inv}");
    }
    assert_eq!(inv["vpcs"][0]["cidr"], "10.77.0.0/16");
    assert_eq!(inv["internet_gateways"][0]["attached_to"], serde_json::json!([vpc]));
    let rt = &inv["route_tables"][0];
    assert!(rt["routes"].as_array().unwrap().iter().any(|r| r["dest"] == "0.0.0.0/0" && r["gateway"] == inv["internet_gateways"][0]["id"]), "{rt}");
    assert_eq!(rt["subnets"], serde_json::json!([subnet]));

    // Security group: operator ports from the operator's CIDR only; the rest within the group.
    let mut rules: Vec<String> = inv["security_groups"][0]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}-{} {}", r["proto"].as_str().unwrap(), r["from"], r["to"], r["source"].as_str().unwrap().replace(sg, "self")))
        .collect();
    rules.sort();
    let mut want = vec![
        format!("tcp 22-22 {CIDR}"),
        format!("tcp 9984-9984 {CIDR}"),
        format!("tcp 9985-9985 {CIDR}"),
        format!("tcp 3000-3000 {CIDR}"),
        "tcp 22-22 group:self".to_string(),
        "tcp 9984-9985 group:self".to_string(),
        "tcp 4222-4222 group:self".to_string(),
        "tcp 6222-6222 group:self".to_string(),
        "udp 8125-8125 group:self".to_string(),
    ];
    want.sort();
    assert_eq!(rules, want);

    // The record: versioned, no secrets, private key 0600 beside it.
    assert_eq!(rec["version"].as_u64(), Some(1));
    assert_eq!(rec["nodes"].as_sequence().unwrap().len(), 33);
    let text = std::fs::read_to_string(sh.clusters().join("big/cluster.yaml")).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "the record must hold no secrets");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(sh.clusters().join("big/id_ed25519")).unwrap().permissions().mode() & 0o777, 0o600);

    // `up` again creates nothing; status and list see the cluster.
    let ids: Vec<String> = inst.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    let (code, out, err) = sh.run(&up_args("big", "32"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("to launch now: 0 host(s)"), "{out}");
    let again = sh.inventory(Some("big"));
    let mut ids2: Vec<String> = again["instances"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    let mut ids1 = ids.clone();
    ids1.sort();
    ids2.sort();
    assert_eq!(ids1, ids2);
    assert_eq!(total(&again), total(&inv), "second up created something");
    let (code, out, _) = sh.run(&["status", "--name", "big"]);
    assert_eq!(code, 0);
    assert!(out.contains("33/33 hosts running"), "{out}");
    let (code, out, _) = sh.run(&["list"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("big ") && l.contains(" 33 ")), "{out}");

    // down: everything goes, in dependency order, and the local record with it.
    let (code, out, err) = sh.run(&["down", "--name", "big"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(total(&sh.inventory(Some("big"))), 0, "{}", sh.inventory(Some("big")));
    let order: Vec<&str> = err.lines().filter_map(|l| l.split("removed ").nth(1)).filter_map(|r| r.split(' ').next()).collect();
    let rank = |k: &str| ["instance", "address", "volume", "security-group", "placement-group", "subnet", "route-table", "internet-gateway", "vpc", "key-pair"].iter().position(|x| *x == k);
    let ranks: Vec<usize> = order.iter().filter_map(|k| rank(k)).collect();
    assert!(ranks.len() >= 7 && ranks.windows(2).all(|w| w[0] <= w[1]), "deletion order: {order:?}\n{err}");
    assert!(!sh.clusters().join("big").exists());
}

#[test]
fn a_killed_up_resumes_without_duplicates_and_down_needs_no_record() {
    let Some(m) = moto() else { return };
    let sh = Shell::new(&m);
    // One launch at a time so the kill lands mid-way through the launches.
    let mut args = up_args("crash", "24");
    args.extend(["--launch-concurrency", "1", "--no-monitor"]);
    let mut child = sh.command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let file = sh.clusters().join("crash/cluster.yaml");
    let deadline = Instant::now() + Duration::from_secs(120);
    let recorded = |t: &str| t.matches("instance_id: i-").count();
    loop {
        let t = std::fs::read_to_string(&file).unwrap_or_default();
        if recorded(&t) >= 3 {
            child.kill().unwrap();
            break;
        }
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "up finished or stalled before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    let before = sh.inventory(Some("crash"));
    let launched = count(&before, "instances");
    assert!((3..24).contains(&launched), "the kill should land mid-launch: {launched} launched");
    // The record is a true record: parseable, every recorded id exists.
    let rec = sh.record("crash");
    for h in rec["nodes"].as_sequence().unwrap() {
        if let Some(id) = h["instance_id"].as_str() {
            assert!(before["instances"].as_array().unwrap().iter().any(|i| i["id"] == id), "record names {id} which does not exist");
        }
    }
    // Resume: exactly 24 nodes, indexes 0..23 once each; earlier instances kept.
    let (code, out, err) = sh.run(&up_args("crash", "24").into_iter().chain(["--no-monitor"]).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}{err}");
    let after = sh.inventory(Some("crash"));
    let mut idx: Vec<u32> = after["instances"].as_array().unwrap().iter().map(|i| i["tags"]["cairn:index"].as_str().unwrap().parse().unwrap()).collect();
    idx.sort();
    assert_eq!(idx, (0..24).collect::<Vec<_>>(), "duplicates or gaps after resume");
    for i in before["instances"].as_array().unwrap() {
        assert!(after["instances"].as_array().unwrap().iter().any(|j| j["id"] == i["id"]), "resume replaced {}", i["id"]);
    }
    // Growing adds only the new nodes.
    let (code, out, err) = sh.run(&up_args("crash", "28").into_iter().chain(["--no-monitor"]).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("to launch now: 4 host(s)"), "{out}");
    assert_eq!(count(&sh.inventory(Some("crash")), "instances"), 28);
    // Lose the record; down finds everything by tag.
    std::fs::remove_dir_all(sh.clusters().join("crash")).unwrap();
    let (code, out, err) = sh.run(&["down", "--name", "crash"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(total(&sh.inventory(Some("crash"))), 0, "{}", sh.inventory(Some("crash")));
}

#[test]
fn bad_input_gets_one_clear_line_and_creates_nothing() {
    let Some(m) = moto() else { return };
    let sh = Shell::new(&m);
    let base = ["up", "--name", "bad", "--nodes", "2", "--provision-only", "--yes"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (with(&base, &["--ami", AMI]), "pass --allow-cidr"),
        (with(&base, &["--ami", AMI, "--allow-cidr", "everyone"]), "not an IPv4 CIDR"),
        (with(&base, &["--ami", AMI, "--allow-cidr", CIDR, "--region", "xx-nowhere-1"]), "unknown AWS region \"xx-nowhere-1\""),
        (with(&base, &["--ami", AMI, "--allow-cidr", CIDR, "--instance-type", "c9.mega"]), "instance type c9.mega is not offered in us-east-1"),
        (with(&base, &["--ami", AMI, "--allow-cidr", CIDR, "--monitor-instance-type", "t9.tiny"]), "instance type t9.tiny is not offered"),
        (with(&base, &["--ami", "ami-0000000000deadbeef", "--allow-cidr", CIDR]), "AMI ami-0000000000deadbeef does not exist in us-east-1"),
        // moto has no Ubuntu SSM parameter: the default-AMI lookup's failure must say what to do.
        (with(&base, &["--allow-cidr", CIDR]), "pass an AMI id with --ami"),
        (with(&base, &["--ami", AMI, "--allow-cidr", CIDR, "--ttl", "4w"]), "unit must be s, m, h or d"),
        (vec!["up", "--name", "bad", "--nodes", "0"], "--nodes"),
        (vec!["up", "--name", "bad", "--colour", "red"], "--colour"),
        (vec!["up", "--name", "bad!", "--allow-cidr", CIDR], "must be 1-40 letters"),
        // No terminal to confirm on and no --yes.
        (vec!["up", "--name", "bad", "--nodes", "2", "--ami", AMI, "--allow-cidr", CIDR], "pass --yes"),
    ];
    for (args, want) in &cases {
        let (code, out, err) = sh.run(args);
        assert_ne!(code, 0, "{args:?} succeeded: {out}{err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in:\n{err}");
        if !want.starts_with("--") {
            let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or("");
            assert!(line.contains(want), "{args:?}: the error must be one line naming the fix: {err}");
        }
    }
    // Missing credentials: the whole chain comes up empty.
    let mut c = sh.command(&with(&base, &["--ami", AMI, "--allow-cidr", CIDR]));
    c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("no AWS credentials found") && err.contains("--profile"), "{err}");
    // A named profile that does not exist.
    let (code, _, err) = sh.run(&with(&base, &["--ami", AMI, "--allow-cidr", CIDR, "--profile", "nosuch"]));
    assert_ne!(code, 0);
    assert!(err.contains("AWS profile \"nosuch\" gave no credentials"), "{err}");
    // --dry-run checks everything, prints the plan, creates nothing.
    let (code, out, err) = sh.run(&with(&base, &["--ami", AMI, "--allow-cidr", CIDR, "--dry-run"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dry run: nothing created") && out.contains("total ~$"), "{out}");
    // Nothing exists in EC2 and no record was written.
    assert_eq!(total(&sh.inventory(None)), 0, "{}", sh.inventory(None));
    assert!(!sh.clusters().join("bad").exists(), "a failed or dry run left a record");
}

#[test]
fn reap_removes_only_expired_clusters() {
    let Some(m) = moto() else { return };
    let sh = Shell::new(&m);
    for name in ["old", "fresh"] {
        let (code, out, err) = sh.run(&up_args(name, "1").into_iter().chain(["--no-monitor"]).collect::<Vec<_>>());
        assert_eq!(code, 0, "{out}{err}");
    }
    // Age "old": its tags say it expired an hour ago (as if its TTL passed).
    let py = repo().join(".venv-aws/bin/python");
    let script = format!(
        "import boto3\nec2=boto3.client('ec2',endpoint_url='{}',region_name='us-east-1',aws_access_key_id='t',aws_secret_access_key='t')\n\
         ids=[v['VpcId'] for v in ec2.describe_vpcs(Filters=[{{'Name':'tag:cairn:cluster','Values':['old']}}])['Vpcs']]\n\
         ids+=[i['InstanceId'] for r in ec2.describe_instances(Filters=[{{'Name':'tag:cairn:cluster','Values':['old']}}])['Reservations'] for i in r['Instances']]\n\
         ec2.create_tags(Resources=ids,Tags=[{{'Key':'cairn:expires','Value':'2020-01-01T00:00:00Z'}}])\n",
        sh.endpoint
    );
    assert!(Command::new(py).arg("-c").arg(script).status().unwrap().success());
    let (code, out, _) = sh.run(&["reap", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would remove old") && !out.contains("fresh"), "{out}");
    assert_eq!(count(&sh.inventory(Some("old")), "instances"), 1, "dry run removed something");
    let (code, out, err) = sh.run(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(total(&sh.inventory(Some("old"))), 0);
    assert_eq!(count(&sh.inventory(Some("fresh")), "instances"), 1, "reap touched a cluster that has not expired");
    let (_, out, _) = sh.run(&["list"]);
    assert!(out.contains("fresh") && !out.contains("old "), "{out}");
}
