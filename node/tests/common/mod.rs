//! Starts real `cairn` processes on free loopback ports for the integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `cairn start` process with its own config and data directory.
pub struct NodeProc {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub api: String,
    /// `ws://127.0.0.1:PORT`
    pub ws: String,
    /// Config file.
    pub config: PathBuf,
    /// Data directory.
    pub data: PathBuf,
    env: Vec<(String, String)>,
    /// Soft open-file limit the process starts with (the shell's `ulimit -Sn`), if set.
    soft_open_files: Option<u64>,
}

/// A free loopback port outside the ephemeral range (bound then released).
pub fn free_port() -> u16 {
    cairn::devcluster::free_port().unwrap()
}

/// Runs `cairn` with `args` and the given config; returns (exit code, stdout, stderr).
pub fn cairn(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn")).arg("--config").arg(config).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

impl NodeProc {
    /// Configures a fresh node in `dir` and starts it.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_soft_open_files(dir, env, None)
    }

    /// As [`NodeProc::start`], with the process's soft open-file limit set to `soft` first.
    pub fn start_with_soft_open_files(dir: &Path, env: &[(&str, &str)], soft: Option<u64>) -> Self {
        let config = dir.join("config.toml");
        let (code, _, err) = cairn(&config, &["configure", "-y"]);
        assert_eq!(code, 0, "configure failed: {err}");
        let mut n = NodeProc {
            child: None,
            api: String::new(),
            ws: String::new(),
            config,
            data: dir.join("data"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            soft_open_files: soft,
        };
        n.launch();
        n
    }

    fn launch(&mut self) {
        let (api_port, ws_port) = (free_port(), free_port());
        self.api = format!("http://127.0.0.1:{api_port}");
        self.ws = format!("ws://127.0.0.1:{ws_port}");
        let log = std::fs::File::create(self.data.with_extension("log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        if let Some(soft) = self.soft_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only getrlimit/setrlimit run (async-signal-safe; no allocation).
            unsafe {
                cmd.pre_exec(move || {
                    let (_, hard) = rlimit::Resource::NOFILE.get()?;
                    rlimit::Resource::NOFILE.set(soft.min(hard), hard)
                });
            }
        }
        let child = cmd
            .arg("--config").arg(&self.config).arg("start")
            .arg("--bind").arg(format!("127.0.0.1:{api_port}"))
            .arg("--ws-bind").arg(format!("127.0.0.1:{ws_port}"))
            .arg("--data-dir").arg(&self.data)
            .envs(self.env.iter().cloned())
            .env("CAIRN_WSSERVER_ADVERTISED_PORT", ws_port.to_string())
            .stdin(Stdio::null()).stdout(Stdio::null()).stderr(log)
            .spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ureq::get(&format!("{}/", self.api)).call().is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cairn exited with {status}: {}", std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cairn did not answer within 20 s");
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits up to `timeout` for the process to exit by itself; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The node's log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// SIGKILL: no clean shutdown, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the node again on the same data (new ports).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
        c.wait().unwrap()
    }

    /// POST a body to `/api/v1/transactions?mode=...`; returns (status, JSON).
    pub fn post(&self, body: &[u8], mode: &str) -> (u16, Value) {
        respond(ureq::post(&format!("{}/api/v1/transactions?mode={mode}", self.api)).send_bytes(body))
    }

    /// GET a path; returns (status, JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        respond(ureq::get(&format!("{}{path}", self.api)).call())
    }

    /// Waits until the transaction's status is `valid`.
    pub fn wait_valid(&self, txid: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.get(&format!("/api/v1/statuses?transaction_id={txid}")).1["status"] == "valid" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{txid} not valid after {timeout:?}");
    }
}

fn respond(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}")))
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// True when a missing external binary must fail the test instead of skipping it.
pub fn require_external() -> bool {
    std::env::var("CAIRN_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}
