//! What the deployer's tests share: a moto server per test and a user's shell around the
//! `deployer` binary (its own HOME and clusters directory, moto's endpoint, test credentials).
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An AMI in moto's built-in image list.
pub const AMI: &str = "ami-760aaa0f";

/// Skips loudly, or fails under CAIRN_REQUIRE_EXTERNAL=1 (as CI sets it).
pub fn missing(test: &str, what: &str) {
    assert!(!std::env::var("CAIRN_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1"), "CAIRN_REQUIRE_EXTERNAL=1 but {what}");
    eprintln!("\n*** SKIP {test}: {what} ***\n");
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub struct Moto {
    child: Child,
    pub url: String,
    _log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto on a free loopback port, or returns None (with a loud SKIP) when moto is not
/// installed and CAIRN_REQUIRE_EXTERNAL is not 1.
pub fn moto() -> Option<Moto> {
    let bin = repo().join(".venv-aws/bin/moto_server");
    if !bin.exists() {
        if std::env::var("CAIRN_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
            panic!("{} is missing (CAIRN_REQUIRE_EXTERNAL=1): run scripts/test.sh, which installs scripts/requirements-aws.txt", bin.display());
        }
        eprintln!("*** SKIP: moto server not installed at {} (scripts/test.sh installs it) ***", bin.display());
        return None;
    }
    let port = cairn::ports::free_loopback_port().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Moto { child, url, _log: log });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("moto did not listen on {port} within 30 s");
}

/// A user's shell: clusters directory, no AWS config files, test credentials for moto.
pub struct Shell {
    home: tempfile::TempDir,
    pub endpoint: String,
}

impl Shell {
    pub fn new(m: &Moto) -> Self {
        Shell { home: tempfile::tempdir().unwrap(), endpoint: m.url.clone() }
    }

    pub fn clusters(&self) -> PathBuf {
        self.home.path().join("clusters")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("AWS_CONFIG_FILE", self.home.path().join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.path().join("no-aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("CAIRN_CLUSTERS_DIR", self.clusters())
            // The user's nats-server (what `up` installs on the hosts), from scripts/test.sh.
            .env("CAIRN_NATS_SERVER", repo().join(".venv/bin/nats-server"))
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let Output { status, stdout, stderr } = self.command(args).output().unwrap();
        (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
    }

    /// What boto3 sees tagged with `cluster` (or with any cluster).
    pub fn inventory(&self, cluster: Option<&str>) -> Value {
        let py = repo().join(".venv-aws/bin/python");
        let mut c = Command::new(py);
        c.arg(repo().join("deployer/tests/ec2_inventory.py")).arg(&self.endpoint).arg("us-east-1");
        if let Some(n) = cluster {
            c.arg(n);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "inventory failed: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    pub fn record(&self, name: &str) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(self.clusters().join(name).join("cluster.yaml")).unwrap()).unwrap()
    }
}


/// The systemctl/journalctl shims (docker-systemctl-replacement from .venv-aws) in `dir`, and
/// the docker shim in `dir/path`: what namespace hosts (`hosts/nshost.sh`) mount.
pub fn shims(dir: &Path) -> Option<PathBuf> {
    let site = std::fs::read_dir(repo().join(".venv-aws/lib")).ok()?.filter_map(|e| e.ok()).map(|e| e.path().join("site-packages/systemctl2")).find(|p| p.is_dir())?;
    let out = dir.join("shims");
    std::fs::create_dir_all(&out).unwrap();
    let systemctl = std::fs::read_to_string(site.join("systemctl3.py")).ok()?;
    let journalctl = std::fs::read_to_string(site.join("journalctl3.py")).ok()?.replace("systemctl_py = \"systemctl3.py\"", "systemctl_py = \"systemctl\"");
    // `docker` goes in its own directory, mounted over the hosts' (empty) /usr/local/sbin.
    std::fs::create_dir_all(out.join("path")).unwrap();
    std::fs::copy(repo().join("deployer/tests/hosts/docker-shim"), out.join("path/docker")).ok()?;
    for (name, text) in [("systemctl", systemctl), ("journalctl", journalctl)] {
        let body = text.split_once('\n').map(|(_, rest)| rest).unwrap_or(&text);
        std::fs::write(out.join(name), format!("#!/usr/bin/python3\n{body}")).unwrap();
        Command::new("chmod").arg("755").arg(out.join(name)).status().unwrap();
    }
    Some(out)
}

/// The namespace hosts that exist now.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("cairn-h")).map(String::from).collect()
}

/// A copy of the cairn binary beside `sibling` without debug info (a test build is 180 MB;
/// uploads are 3x).
pub fn stripped_cairn(sibling: &Path, dir: &Path) -> Option<PathBuf> {
    let cairn = sibling.with_file_name("cairn");
    if !cairn.is_file() {
        return None;
    }
    let out = dir.join("cairn");
    let ok = Command::new("strip").arg("-o").arg(&out).arg(&cairn).status().is_ok_and(|s| s.success());
    Some(if ok { out } else { cairn })
}

/// Root and `ip` (network namespaces) and Debian's sshd: what namespace hosts need; a loud SKIP
/// (or a failure under CAIRN_REQUIRE_EXTERNAL=1) when absent.
pub fn can_host_namespaces(test: &str) -> bool {
    let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    if !root || Command::new("ip").arg("-V").output().is_err() {
        missing(test, "not root or no `ip`: network-namespace hosts need both");
        return false;
    }
    if !Path::new("/usr/sbin/sshd").exists() {
        missing(test, "no /usr/sbin/sshd (apt-get install openssh-server; .ci/run does)");
        return false;
    }
    true
}
