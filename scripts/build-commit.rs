//! Build script shared by the `cairn` and `loadgen` packages (their Cargo.toml's `build` key):
//! sets `CAIRN_BUILD_COMMIT` to the git commit the binary was built from, with `-dirty` when
//! tracked files had local changes, or `unknown` outside a git work tree, and `CAIRN_VERSION`
//! to "<package version> (commit <it>)", which `--version` prints, so a results file that records a binary's version names the build that ran, not only
//! the work tree loadgen was started from (benchmarks compare binaries of other builds).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("{c}{}", if dirty { "-dirty" } else { "" })
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=CAIRN_BUILD_COMMIT={commit}");
    // What `--version` prints after the program name.
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    println!("cargo:rustc-env=CAIRN_VERSION={version} (commit {commit})");
    // Run again when the commit, the index or any source of the workspace changes (a new
    // commit, a checkout, an edit that makes the tree dirty or clean again).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Only files that exist: cargo takes a missing one as changed and would always rebuild.
        let head = git(&["symbolic-ref", "-q", "HEAD"]);
        for f in ["HEAD", "index", "packed-refs"].into_iter().chain(head.as_deref()) {
            if Path::new(&dir).join(f).exists() {
                println!("cargo:rerun-if-changed={dir}/{f}");
            }
        }
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let workspace = Path::new(&manifest).parent().expect("a package inside the workspace");
    for crate_dir in ["ledger", "node", "loadgen"] {
        println!("cargo:rerun-if-changed={}", workspace.join(crate_dir).join("src").display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
}
