//! The official Python driver (bigchaindb_driver 0.6.2, unchanged) walks through create,
//! commit, transfer, read back, double spend, outputs, search and the websocket stream
//! against a real `cairn start`. Needs the oracle venv (`vectors/setup.sh`).

mod common;
use common::{require_external, NodeProc};
use std::path::PathBuf;

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CAIRN_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))),
    ];
    candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p).args(["-c", "import bigchaindb_driver, websockets"]).output().is_ok_and(|o| o.status.success())
    })
}

#[test]
fn official_driver_walkthrough() {
    let Some(py) = python() else {
        assert!(!require_external(), "CAIRN_REQUIRE_EXTERNAL=1 but no Python with bigchaindb_driver: run vectors/setup.sh");
        eprintln!("\n*** SKIP official_driver_walkthrough: no Python with bigchaindb_driver (run vectors/setup.sh or set CAIRN_PYTHON) ***\n");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let out = std::process::Command::new(py)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/driver_walkthrough.py"))
        .arg(&node.api)
        .arg(&node.ws)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "walkthrough failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all steps passed"));
}
