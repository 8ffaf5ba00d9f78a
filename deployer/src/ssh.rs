//! SSH to the cluster's hosts through the system OpenSSH client (the `openssh` crate, one
//! multiplexed master per host): host keys only from the cluster's pinned known_hosts (never
//! ~/.ssh or /etc/ssh), the cluster's own key, no passwords. Commands run as root (through
//! `sudo -n` when the login user is not root); files are uploaded through stdin and checked
//! by SHA-256 before they replace anything.

use crate::cluster::{Cluster, Dir, Host};
use anyhow::{anyhow, bail, Context, Result};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// One connected host.
pub struct Remote {
    /// `node 3`, `monitor 0`: how messages name the host.
    pub label: String,
    /// The address dialled.
    pub addr: String,
    session: Session,
    sudo: bool,
}

/// How to reach the hosts of a cluster.
pub struct Access {
    user: String,
    key: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
    config: std::path::PathBuf,
    control: std::path::PathBuf,
    connect: String,
    timeout: Duration,
}

impl Access {
    /// From the cluster record: its user, key, pinned known_hosts and address choice. Writes
    /// the ssh_config that keeps the system's known_hosts files out.
    pub fn new(dir: &Dir, rec: &Cluster, timeout: Duration) -> Result<Self> {
        let config = dir.join("ssh_config");
        crate::cluster::write_atomic(
            &config,
            b"# Written by the deployer: only the cluster's pinned known_hosts is trusted.\nHost *\n  GlobalKnownHostsFile /dev/null\n  HashKnownHosts no\n  UpdateHostKeys no\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n  LogLevel ERROR\n  ServerAliveInterval 15\n",
            0o644,
        )?;
        // Unix socket paths are limited to 108 bytes: keep the control directory short.
        let control = std::env::temp_dir().join(format!("cairn-ssh-{}", std::process::id()));
        std::fs::create_dir_all(&control).with_context(|| format!("creating {}", control.display()))?;
        Ok(Access {
            user: rec.ssh.user.clone(),
            key: dir.join(&rec.ssh.key_file),
            known_hosts: dir.join(&rec.ssh.known_hosts_file),
            config,
            control,
            connect: rec.ssh.connect.clone(),
            timeout,
        })
    }

    /// The address the deployer dials for `h`.
    pub fn addr(&self, h: &Host) -> Option<String> {
        if self.connect == "private" { h.private_ip.clone() } else { h.public_ip.clone() }
    }

    /// Connects to `h`, retrying refused or timed-out connections (a host still booting) until
    /// the timeout; a host key that does not match the pinned one fails at once.
    pub async fn connect(&self, h: &Host) -> Result<Remote> {
        let label = format!("{} {}", h.role, h.index);
        let addr = self.addr(h).with_context(|| format!("{label} has no {} address: run `deployer up` to finish provisioning", self.connect))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut delay = Duration::from_millis(500);
        loop {
            let mut b = SessionBuilder::default();
            b.user(self.user.clone())
                .keyfile(&self.key)
                .known_hosts_check(KnownHosts::Strict)
                .user_known_hosts_file(&self.known_hosts)
                .config_file(&self.config)
                .control_directory(&self.control)
                .connect_timeout(Duration::from_secs(10))
                .server_alive_interval(Duration::from_secs(15));
            match b.connect_mux(&addr).await {
                Ok(session) => return Ok(Remote { label, addr, session, sudo: self.user != "root" }),
                Err(e) => {
                    let text = error_text(&e);
                    if text.contains("Host key verification failed") || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || text.contains("No ED25519 host key is known") {
                        bail!(
                            "{label} ({addr}): its SSH host key is not the one pinned when it was provisioned ({}); refusing to connect. \
                             If the host was replaced on purpose, `deployer down` and `up` again; otherwise investigate",
                            self.known_hosts.display()
                        );
                    }
                    if text.contains("Permission denied") {
                        bail!("{label} ({addr}): the host refused the cluster key {} for user {}: check --ssh-user", self.key.display(), self.user);
                    }
                    if tokio::time::Instant::now() + delay > deadline {
                        bail!("{label} ({addr}): no SSH connection within {}s (last error: {}); is the host running? `deployer status`", self.timeout.as_secs(), text.trim());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl Access {
    /// Connects to `h`, runs `script` (as [`Remote::run_status`]) and disconnects.
    pub async fn run_once(&self, h: &Host, script: &str) -> Result<(i32, String, String)> {
        let r = self.connect(h).await?;
        let out = r.run_status(script).await;
        r.close().await;
        out
    }
}

impl Drop for Access {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.control);
    }
}

/// An openssh error with its source chain (ssh's own message is in the source).
fn error_text(e: &openssh::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

impl Remote {
    fn command(&self, script: &str) -> openssh::Command<'_> {
        let mut c = if self.sudo {
            let mut c = self.session.command("sudo");
            c.args(["-n", "sh", "-c"]);
            c
        } else {
            let mut c = self.session.command("sh");
            c.arg("-c");
            c
        };
        c.raw_arg(shell_quote(script));
        c
    }

    /// Runs a shell script as root; its stdout, or an error with its stderr.
    pub async fn run(&self, script: &str) -> Result<String> {
        let out = self.command(script).output().await.map_err(|e| anyhow!("{}: {}", self.label, error_text(&e)))?;
        if !out.status.success() {
            bail!(
                "{} ({}): `{}` failed ({}): {}",
                self.label,
                self.addr,
                script.lines().next().unwrap_or(""),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Runs a script and returns (exit code, stdout, stderr) without judging it.
    pub async fn run_status(&self, script: &str) -> Result<(i32, String, String)> {
        let out = self.command(script).output().await.map_err(|e| anyhow!("{}: {}", self.label, error_text(&e)))?;
        Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string()))
    }

    /// Runs a script with its output going straight to this terminal (logs, --follow);
    /// returns its exit code.
    pub async fn run_inherit(&self, script: &str) -> Result<i32> {
        let status = self
            .command(script)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .await
            .map_err(|e| anyhow!("{}: {}", self.label, error_text(&e)))?;
        Ok(status.code().unwrap_or(-1))
    }

    /// The SHA-256 of a remote file, or None when it does not exist.
    pub async fn sha256(&self, path: &str) -> Result<Option<String>> {
        let out = self.run(&format!("if [ -f {p} ]; then sha256sum {p}; fi", p = shell_quote(path))).await?;
        Ok(out.split_whitespace().next().map(str::to_string))
    }

    /// Writes `bytes` to `path` (mode, owner) unless it already holds exactly them: through a
    /// temporary file whose SHA-256 is checked before it replaces the old one. Returns whether
    /// the file changed.
    pub async fn put(&self, path: &str, bytes: &[u8], mode: u32, owner: &str) -> Result<bool> {
        let want = sha256_hex(bytes);
        if self.sha256(path).await?.as_deref() == Some(want.as_str()) {
            // Content equal: still make sure of mode and owner.
            self.run(&format!("chmod {mode:o} {p} && chown {owner} {p}", p = shell_quote(path))).await?;
            return Ok(false);
        }
        let tmp = format!("{path}.upload");
        let script = format!(
            "umask 077 && mkdir -p \"$(dirname {t})\" && cat > {t} && [ \"$(sha256sum < {t} | cut -d' ' -f1)\" = {want} ] \
             && chmod {mode:o} {t} && chown {owner} {t} && mv -f {t} {p}",
            t = shell_quote(&tmp),
            p = shell_quote(path)
        );
        let mut child = self
            .command(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| anyhow!("{}: {}", self.label, error_text(&e)))?;
        let mut stdin = child.stdin().take().context("ssh stdin")?;
        stdin.write_all(bytes).await.with_context(|| format!("{}: uploading {path}", self.label))?;
        stdin.shutdown().await?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| anyhow!("{}: {}", self.label, error_text(&e)))?;
        if !out.status.success() {
            bail!("{} ({}): uploading {path} failed (checksum or write): {}", self.label, self.addr, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(true)
    }

    /// Closes the master connection.
    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Single-quotes a string for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
