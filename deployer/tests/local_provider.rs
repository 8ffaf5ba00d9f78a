//! `deployer up --provider local`: the same cluster file and commands with processes on this
//! machine. A 3-node federation forms and checks itself; loadgen reaches it through the
//! cluster file; a killed node comes back with `fault start`; `reset --nodes 2` forms a fresh
//! federation of two; `down` leaves no process and no directory.

mod common;
use common::{missing, repo};
use std::path::{Path, PathBuf};
use std::process::Command;

fn deployer(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer")).args(args).current_dir(cwd).env_remove("CAIRN_CLUSTERS_DIR").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn pids(dir: &Path) -> Vec<i32> {
    let mut v = Vec::new();
    for i in 0..3 {
        for f in ["node.pid", "engine.pid"] {
            if let Ok(t) = std::fs::read_to_string(dir.join(format!("node{i}")).join(f)) {
                v.push(t.trim().parse().unwrap());
            }
        }
    }
    v
}

fn alive(p: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn local_provider_forms_a_federation_loadgen_reaches_through_the_cluster_file() {
    let nats = repo().join(".venv/bin/nats-server");
    if !nats.is_file() {
        return missing("local_provider", "no .venv/bin/nats-server (run scripts/test.sh)");
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_deployer"));
    let (cairn, loadgen) = (exe.with_file_name("cairn"), exe.with_file_name("loadgen"));
    assert!(cairn.is_file() && loadgen.is_file(), "cairn and loadgen are built beside the deployer (scripts/test.sh builds every binary first)");
    let home = tempfile::tempdir().unwrap();
    let (c, n) = (cairn.display().to_string(), nats.display().to_string());
    let up = deployer(home.path(), &["up", "--provider", "local", "--nodes", "3", "--name", "lab", "--cairn-binary", &c, "--nats-server", &n]);
    assert_eq!(up.0, 0, "{up:?}");
    assert!(up.2.contains("smoke transaction posted to node 0 is VALID on every node"), "{}", up.2);
    let dir = home.path().join("clusters/lab");
    let record = std::fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    assert!(record.contains("provider: local") && record.matches("state: running").count() == 3, "{record}");
    let mode = |f: &str| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join(f)).unwrap().permissions()) & 0o777;
    assert_eq!((mode("engine.secret"), mode("node0/config.toml"), mode("node0/nats.conf")), (0o600, 0o600, 0o600));

    // loadgen through the cluster file: every transaction accepted and committed (exit 0).
    let lg = Command::new(&loadgen).args(["--cluster", &dir.join("cluster.yaml").display().to_string(), "--count", "300", "--rate", "300"]).output().unwrap();
    assert!(lg.status.success(), "loadgen --cluster: {}", String::from_utf8_lossy(&lg.stderr));
    let result: serde_json::Value = serde_json::from_slice(&lg.stdout).unwrap();
    assert_eq!((result["nodes"].as_u64(), result["committed"]["count"].as_u64()), (Some(3), Some(300)));

    // A killed node is down until started again.
    assert_eq!(deployer(home.path(), &["fault", "1", "kill", "--name", "lab"]).0, 0);
    assert!(deployer(home.path(), &["status", "--name", "lab"]).1.lines().any(|l| l.trim_start().starts_with('1') && l.contains("stopped")));
    let start = deployer(home.path(), &["fault", "1", "start", "--name", "lab"]);
    assert_eq!(start.0, 0, "{start:?}");

    // A fresh federation of two.
    let reset = deployer(home.path(), &["reset", "--nodes", "2", "--name", "lab"]);
    assert_eq!(reset.0, 0, "{reset:?}");
    let record = std::fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    assert_eq!((record.matches("state: running").count(), record.matches("state: standby").count()), (2, 1), "{record}");

    // down: no process, no directory.
    let running = pids(&dir);
    assert_eq!(running.len(), 4, "two members' engine and node");
    let down = deployer(home.path(), &["down", "--name", "lab"]);
    assert_eq!(down.0, 0, "{down:?}");
    assert!(!dir.exists());
    assert!(running.iter().all(|p| !alive(*p)), "processes left after down");
}
