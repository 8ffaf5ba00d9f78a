//! ansible/ for real: three node hosts and a monitor host in network namespaces (the deployer's
//! test hosts, `hosts/nshost.sh`: Debian's sshd with a pinned host key, systemctl shim, docker
//! shim), an inventory in the shape the deployer writes, `ansible-playbook site.yml` run twice.
//! The first run ends with a working 3-node federation (a CREATE through node 0 is VALID on
//! nodes 1 and 2); the second reports changed=0 on every host. Needs root, Debian's
//! openssh-server, .venv-aws (the systemctl shim) and .venv-iac (ansible-core).

mod common;
use common::{can_host_namespaces, missing, namespaces, repo, shims, stripped_cairn};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST: &str = "the_playbook_forms_a_federation_and_a_second_run_changes_nothing";
const NODES: [&str; 3] = ["10.77.0.21", "10.77.0.22", "10.77.0.23"];
const MONITOR: &str = "10.77.0.24";

/// The namespace hosts; removed on drop, also when the test fails.
struct Hosts {
    env: Vec<(String, String)>,
}

impl Hosts {
    fn nshost(&self, args: &[&str]) -> bool {
        Command::new(repo().join("deployer/tests/hosts/nshost.sh")).args(args).envs(self.env.iter().cloned()).status().unwrap().success()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.nshost(&["down"]);
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "ansible-e2e", "-f"]).arg(path).status().unwrap().success();
    assert!(ok, "ssh-keygen failed");
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(method: &str, addr: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// PLAY RECAP lines: host -> (changed, unreachable, failed).
fn recap(out: &str) -> Vec<(String, u64, u64, u64)> {
    let tail = out.rsplit("PLAY RECAP").next().unwrap_or("");
    tail.lines()
        .filter(|l| l.contains("ok="))
        .map(|l| {
            let host = l.split_whitespace().next().unwrap().to_string();
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
            (host, field("changed"), field("unreachable"), field("failed"))
        })
        .collect()
}

#[test]
fn the_playbook_forms_a_federation_and_a_second_run_changes_nothing() {
    if !can_host_namespaces(TEST) {
        return;
    }
    let playbook = repo().join(".venv-iac/bin/ansible-playbook");
    if !playbook.is_file() {
        return missing(TEST, "no .venv-iac/bin/ansible-playbook (scripts/test.sh installs scripts/requirements-iac.txt)");
    }
    let nats = repo().join(".venv/bin/nats-server");
    if !nats.is_file() {
        return missing(TEST, "no .venv/bin/nats-server (run scripts/test.sh)");
    }
    let work = tempfile::tempdir().unwrap();
    let Some(shim_dir) = shims(work.path()) else {
        return missing(TEST, "no docker-systemctl-replacement in .venv-aws (scripts/requirements-aws.txt)");
    };
    let cairn = stripped_cairn(&PathBuf::from(env!("CARGO_BIN_EXE_deployer")), work.path()).expect("the cairn binary is built beside the deployer (scripts/test.sh builds every binary first)");
    assert!(namespaces().is_empty(), "namespace hosts {:?} exist already (another run?): deployer/tests/hosts/nshost.sh down", namespaces());

    // Four hosts: root's key, one pinned host key each.
    let key = work.path().join("id");
    keygen(&key);
    let hosts = Hosts {
        env: vec![
            ("CAIRN_SYSTEMCTL_SHIM".into(), shim_dir.display().to_string()),
            ("CAIRN_TEST_HOSTS".into(), work.path().join("hosts").display().to_string()),
        ],
    };
    let mut known_hosts = String::new();
    for (i, ip) in NODES.iter().chain([&MONITOR]).enumerate() {
        let hk = work.path().join(format!("hostkey{i}"));
        keygen(&hk);
        assert!(hosts.nshost(&["add", ip, &format!("{}.pub", key.display()), &hk.display().to_string()]), "nshost add {ip}");
        known_hosts.push_str(&format!("{ip} {}", std::fs::read_to_string(format!("{}.pub", hk.display())).unwrap()));
    }
    std::fs::write(work.path().join("known_hosts"), &known_hosts).unwrap();
    for ip in NODES.iter().chain([&MONITOR]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&format!("{ip}:22").parse().unwrap(), Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "sshd on {ip} did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The inventory, in the shape `deployer up` writes (deployer/src/inventory.rs).
    let mut inv = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    ansible_ssh_common_args: -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile={}\n    cairn_cluster: lab\n  children:\n    cairn_nodes:\n      hosts:\n",
        key.display(),
        work.path().join("known_hosts").display()
    );
    for (i, ip) in NODES.iter().enumerate() {
        inv.push_str(&format!("        node{i}:\n          ansible_host: {ip}\n          cairn_index: {i}\n          cairn_private_ip: {ip}\n"));
    }
    inv.push_str(&format!("    cairn_monitor:\n      hosts:\n        monitor0:\n          ansible_host: {MONITOR}\n          cairn_index: 0\n          cairn_private_ip: {MONITOR}\n"));
    std::fs::write(work.path().join("inventory.yaml"), &inv).unwrap();

    let secret = |tag: &str| format!("{tag}-{}", cairn::crypto::Keypair::generate().public_b58);
    let (engine_pw, route_pw, grafana_pw) = (secret("e"), secret("r"), secret("g"));
    let run = || {
        let t = Instant::now();
        let out = Command::new(&playbook)
            .current_dir(repo().join("ansible"))
            .args(["-i", &work.path().join("inventory.yaml").display().to_string(), "site.yml"])
            .args(["-e", &format!("node_cairn_binary_src={}", cairn.display()), "-e", &format!("engine_nats_server_src={}", nats.display())])
            .args(["-e", "common_install_packages=false"])
            .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
            .env("ANSIBLE_LOCAL_TEMP", work.path().join("ansible-local"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("CAIRN_ENGINE_PASSWORD", &engine_pw)
            .env("CAIRN_ROUTE_PASSWORD", &route_pw)
            .env("GRAFANA_ADMIN_PASSWORD", &grafana_pw)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("ansible-playbook: {:.1} s, exit {}", t.elapsed().as_secs_f64(), out.status);
        (out.status.success(), text)
    };

    // First run: everything installed, started and checked.
    let (ok, first) = run();
    assert!(ok, "first run failed:\n{first}");
    let r = recap(&first);
    assert_eq!(r.len(), 4, "{first}");
    assert!(r.iter().all(|(_, _, u, f)| *u == 0 && *f == 0), "{r:?}");
    assert!(!first.contains(&engine_pw) && !first.contains(&grafana_pw), "a secret appeared in the playbook's output");

    // A working federation: a CREATE through node 0 is VALID on nodes 1 and 2.
    let tx = cairn::workload::create_tx(&cairn::crypto::Keypair::generate(), 1);
    let id = tx["id"].as_str().unwrap().to_string();
    let posted = http("POST", &format!("{}:9984", NODES[0]), "/api/v1/transactions?mode=async", &tx.to_string());
    assert_eq!(posted.as_ref().map(|p| p.0), Some(202), "{posted:?}");
    for ip in &NODES[1..] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http("GET", &format!("{ip}:9984"), &format!("/api/v1/transactions/{id}"), "").is_some_and(|(s, _)| s == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "the transaction posted to node 0 is not VALID on {ip} within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        let (_, root) = http("GET", &format!("{ip}:9984"), "/", "").unwrap();
        let v: serde_json::Value = serde_json::from_str(&root).unwrap();
        assert_eq!(v["keyring"].as_array().map(|k| k.len()), Some(2), "{root}");
        assert_eq!(v["engine"], "jetstream", "{root}");
    }
    // Private files stay private; the monitor got its stack with a 0600 .env.
    let host_file = |ip: &str, f: &str| std::fs::metadata(format!("/etc/netns/cairn-h{}/cairn/{f}", ip.rsplit('.').next().unwrap())).unwrap();
    for f in ["config.toml", "nats.conf"] {
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&host_file(NODES[1], f).permissions()) & 0o777, 0o600, "{f}");
    }
    let env = work.path().join(format!("hosts/cairn-h{}/opt/monitor/.env", MONITOR.rsplit('.').next().unwrap()));
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&env).unwrap().permissions()) & 0o777, 0o600);
    let config = std::fs::read_to_string(format!("/etc/netns/cairn-h{}/cairn/config.toml", NODES[2].rsplit('.').next().unwrap())).unwrap();
    assert!(config.contains(&format!("host = \"{MONITOR}\"")), "statsd goes to the monitor host:\n{config}");

    // Second run: nothing changes.
    let (ok, second) = run();
    assert!(ok, "second run failed:\n{second}");
    let r = recap(&second);
    assert_eq!(r.len(), 4, "{second}");
    assert!(r.iter().all(|(_, c, u, f)| *c == 0 && *u == 0 && *f == 0), "the second run changed something: {r:?}\n{second}");
    drop(hosts);
    assert!(namespaces().is_empty());
}
