//! What a result must say about where it came from: the machine, the git commit (and whether
//! the tree was dirty), and the SHA-256 and version of every binary involved.

use ledger::crypto::Keypair;
use rayon::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

/// Cores, CPU model, memory and kernel of this machine.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "os": std::env::consts::OS,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// The commit of the git work tree loadgen runs from, and whether it has local changes.
pub fn git() -> Value {
    let out = |args: &[&str]| Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match out(&["rev-parse", "HEAD"]) {
        Some(commit) => json!({"commit": commit, "dirty": out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty())}),
        None => json!({"commit": null, "note": "not run from a git work tree"}),
    }
}

/// SHA-256 of a file (hex), streaming.
pub fn sha256(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `path`'s hash and first line of `path --version`.
pub fn binary(path: &Path) -> Value {
    let version = Command::new(path).arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string());
    json!({"path": path.display().to_string(), "sha256": sha256(path), "version": version})
}

/// Strict Ed25519 verifications per second on all cores: the ceiling validation is held to, and
/// a calibration of this machine recorded beside every figure.
pub fn raw_verify_rate() -> f64 {
    use ed25519_dalek::Signer;
    let keys: Vec<Keypair> = (0..256).map(|_| Keypair::generate()).collect();
    let msg = [9u8; 32];
    let sigs: Vec<_> = keys.iter().map(|k| k.signing.sign(&msg)).collect();
    let n = 20_000;
    let start = std::time::Instant::now();
    (0..n).into_par_iter().for_each(|i| {
        let k = &keys[i % 256];
        k.signing.verifying_key().verify_strict(&msg, &sigs[i % 256]).expect("valid signature");
    });
    n as f64 / start.elapsed().as_secs_f64()
}

/// How far the raw verify rate may move between the start and the end of a run before the
/// result says so: this is the day-to-day noise of a shared virtual machine.
pub const RAW_DRIFT_NOTE_ABOVE: f64 = 0.10;

/// The raw verify rate measured before and after a run. A virtual machine's speed can move by
/// a fifth within minutes, so one measurement at the start can misstate the ratio a run
/// reports; the mean of both ends is the denominator, and the drift between them is recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawVerify {
    /// Verifications per second before the run.
    pub before: f64,
    /// Verifications per second after the run.
    pub after: f64,
}

impl RawVerify {
    /// The two measurements of one run.
    pub fn of(before: f64, after: f64) -> Self {
        RawVerify { before, after }
    }

    /// The rate a run's ratio is taken against: the mean of both ends.
    pub fn mean(&self) -> f64 {
        (self.before + self.after) / 2.0
    }

    /// After relative to before, minus one (−0.2: the machine verified 20 % slower at the end).
    pub fn drift(&self) -> f64 {
        if self.before > 0.0 {
            self.after / self.before - 1.0
        } else {
            0.0
        }
    }

    /// The drift, when it is past [`RAW_DRIFT_NOTE_ABOVE`] either way: the reader should be told.
    pub fn moved(&self) -> Option<f64> {
        let d = self.drift();
        (d.abs() > RAW_DRIFT_NOTE_ABOVE).then_some(d)
    }

    /// A line for the reader of a run when the machine's speed [`moved`](Self::moved).
    pub fn warning(&self) -> Option<String> {
        self.moved().map(|d| {
            format!(
                "this machine's raw verify rate moved {:+.0} % during the run ({:.0}/s before, {:.0}/s after): its speed was not steady, so the ratio (taken against the mean, {:.0}/s) is uncertain by about that much; repeat the run, alternating builds when comparing them",
                d * 100.0,
                self.before,
                self.after,
                self.mean()
            )
        })
    }
}

#[cfg(test)]
mod raw_verify_tests {
    use super::*;

    #[test]
    fn the_ratio_is_taken_against_the_mean_and_a_drift_past_ten_percent_is_said() {
        let steady = RawVerify::of(40_000.0, 42_000.0);
        assert_eq!(steady.mean(), 41_000.0);
        assert!((steady.drift() - 0.05).abs() < 1e-9);
        assert_eq!(steady.warning(), None);
        let slower = RawVerify::of(44_000.0, 33_000.0);
        assert!((slower.drift() + 0.25).abs() < 1e-9);
        let w = slower.warning().expect("a 25 % drop is reported");
        assert!(w.contains("-25 %") && w.contains("44000/s before") && w.contains("33000/s after") && w.contains("38500/s"), "{w}");
        assert!(RawVerify::of(30_000.0, 33_500.0).warning().is_some(), "a rise past 10 % is reported too");
        assert_eq!(RawVerify::of(0.0, 1.0).drift(), 0.0);
    }
}
