//! What the deployer's tests share: a moto server per test and a user's shell around the
//! `deployer` binary (its own HOME and clusters directory, moto's endpoint, test credentials).
#![allow(dead_code)]

use serde_json::Value;
use std::net::TcpListener;
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
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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

