//! The benchmark and demo scripts run the binaries cargo just built, wherever cargo put them:
//! `scripts/cargo-target.sh` asks cargo, and no script names `./target/…` itself (with
//! `CARGO_TARGET_DIR` set, `scripts/demo.sh` failed with "./target/release/loadgen: No such
//! file", and a benchmark would have run an older build left in `./target`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `cargo_target_dir` as a script would, from `cwd`, with `CARGO_TARGET_DIR` set or unset.
fn run_helper(cwd: &Path, cargo_target_dir: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!(". {}/scripts/cargo-target.sh && cargo_target_dir", repo().display())]).current_dir(cwd);
    match cargo_target_dir {
        Some(d) => cmd.env("CARGO_TARGET_DIR", d),
        None => cmd.env_remove("CARGO_TARGET_DIR"),
    };
    cmd.output().expect("bash runs")
}

/// The directory `cargo_target_dir` prints (it must succeed).
fn target_dir_seen(cwd: &Path, cargo_target_dir: Option<&str>) -> String {
    let out = run_helper(cwd, cargo_target_dir);
    assert!(out.status.success(), "cargo_target_dir failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}

#[test]
fn scripts_find_the_build_where_cargo_put_it() {
    let repo = repo();
    assert_eq!(target_dir_seen(&repo, None), repo.join("target").display().to_string());
    let elsewhere = std::env::temp_dir().join("cairn-elsewhere-target");
    assert_eq!(target_dir_seen(&repo, Some(elsewhere.to_str().unwrap())), elsewhere.display().to_string());
    // A relative CARGO_TARGET_DIR is relative to where the script runs (scripts cd to the root).
    assert_eq!(target_dir_seen(&repo, Some("t2")), repo.join("t2").display().to_string());
}

#[test]
fn outside_a_checkout_it_says_what_to_do() {
    let out = run_helper(Path::new("/"), None);
    assert!(!out.status.success(), "cargo_target_dir outside a checkout must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("run the script from a checkout of the repository"));
}

#[test]
fn no_script_runs_binaries_from_a_hard_coded_target_directory() {
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(repo().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sh") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                if !line.trim_start().starts_with('#') && line.contains("target/release") {
                    offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "use $(cargo_target_dir) from scripts/cargo-target.sh instead:\n{}", offenders.join("\n"));
}
