//! SSH keys the deployer makes: the cluster's login key pair (private half 0600 in the cluster
//! directory, never printed) and one host key per host, handed to the host in its cloud-init
//! user-data so that `known_hosts` is pinned before the first connection (no trust on first use).

use crate::cluster::write_atomic;
use anyhow::{Context, Result};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::path::Path;

/// An Ed25519 key pair in OpenSSH encodings.
pub struct SshKeyPair {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` text. Secret: goes to 0600 files and user-data only.
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA… comment`.
    pub public_openssh: String,
}

impl std::fmt::Debug for SshKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKeyPair").field("public_openssh", &self.public_openssh).field("private_openssh", &"<hidden>").finish()
    }
}

/// A fresh Ed25519 key pair with `comment`.
pub fn generate(comment: &str) -> Result<SshKeyPair> {
    let mut k = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).context("generating an ed25519 key")?;
    k.set_comment(comment);
    Ok(SshKeyPair {
        private_openssh: k.to_openssh(LineEnding::LF).context("encoding the private key")?.to_string(),
        public_openssh: k.public_key().to_openssh().context("encoding the public key")?,
    })
}

/// The cluster's login key: reads `path` (and `path.pub`) if present, else generates and writes
/// them (private 0600). Re-running `up` keeps the key the hosts already trust.
pub fn login_key(path: &Path, comment: &str) -> Result<SshKeyPair> {
    let pub_path = path.with_extension("pub");
    if path.exists() {
        let private = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let k = PrivateKey::from_openssh(&private).with_context(|| format!("{} is not an OpenSSH private key", path.display()))?;
        return Ok(SshKeyPair { private_openssh: private, public_openssh: k.public_key().to_openssh()? });
    }
    let kp = generate(comment)?;
    write_atomic(path, kp.private_openssh.as_bytes(), 0o600)?;
    write_atomic(&pub_path, format!("{}\n", kp.public_openssh).as_bytes(), 0o644)?;
    Ok(kp)
}

/// `ssh-ed25519 AAAA…` without the comment, as known_hosts wants it.
pub fn key_without_comment(public_openssh: &str) -> String {
    public_openssh.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// known_hosts text: one line per (address, host key).
pub fn known_hosts(entries: &[(String, String)]) -> String {
    entries.iter().map(|(addr, key)| format!("{addr} {}\n", key_without_comment(key))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_private_half_is_0600_and_hidden() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id_ed25519");
        let a = login_key(&p, "cairn-test").unwrap();
        assert!(a.public_openssh.starts_with("ssh-ed25519 "), "{}", a.public_openssh);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = login_key(&p, "cairn-test").unwrap();
        assert_eq!(a.public_openssh, b.public_openssh, "a second run must keep the key");
        assert!(!format!("{a:?}").contains("PRIVATE"), "Debug must not print the private key");
        // ssh-keygen agrees the file is a valid key whose public half is ours.
        let o = std::process::Command::new("ssh-keygen").arg("-y").arg("-f").arg(&p).output().expect("ssh-keygen (Debian openssh-client) must be installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(key_without_comment(&String::from_utf8_lossy(&o.stdout)), key_without_comment(&a.public_openssh));
        let kh = known_hosts(&[("10.0.0.4".into(), a.public_openssh.clone())]);
        assert_eq!(kh, format!("10.0.0.4 {}\n", key_without_comment(&a.public_openssh)));
    }
}
