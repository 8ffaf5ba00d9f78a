//! terraform/ and ansible/ checked without a cloud: `terraform fmt -check`, the HCL checks of
//! terraform/tests/check_terraform.py, checkov with no failed check, `ansible-playbook
//! --syntax-check`, ansible-lint's production profile, and the playbook's systemd units equal to
//! the deployer's. (The playbook itself runs for real in ansible_e2e.rs.)

mod common;
use common::{missing, repo};
use std::process::Command;

fn iac(tool: &str) -> Option<std::path::PathBuf> {
    let p = repo().join(".venv-iac/bin").join(tool);
    p.is_file().then_some(p)
}

#[test]
fn terraform_is_formatted() {
    let Ok(out) = Command::new("terraform").args(["fmt", "-check", "-recursive", "-diff"]).current_dir(repo().join("terraform")).output() else {
        return missing("terraform_is_formatted", "no terraform CLI on PATH");
    };
    assert!(out.status.success(), "terraform fmt -check found unformatted files:\n{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn terraform_passes_its_static_checks() {
    let Some(python) = iac("python") else { return missing("terraform_passes_its_static_checks", "no .venv-iac (scripts/test.sh installs scripts/requirements-iac.txt)") };
    let out = Command::new(python).arg(repo().join("terraform/tests/check_terraform.py")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(", 0 problems"), "{text}");
}

#[test]
fn checkov_reports_no_failed_check() {
    let Some(checkov) = iac("checkov") else { return missing("checkov_reports_no_failed_check", "no .venv-iac/bin/checkov") };
    let out = Command::new(checkov).args(["-d", "terraform", "--framework", "terraform", "--quiet", "--compact", "-o", "json"]).current_dir(repo()).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("checkov did not print JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let reports = if v.is_array() { v.as_array().unwrap().clone() } else { vec![v] };
    for r in reports {
        let failed: Vec<String> = r["results"]["failed_checks"].as_array().into_iter().flatten().map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["file_path"])).collect();
        assert!(failed.is_empty(), "checkov failed checks (fix them, or skip inline with a reason listed in terraform/README.md):\n{}", failed.join("\n"));
        assert!(r["summary"]["passed"].as_u64().unwrap_or(0) > 100, "{}", r["summary"]);
    }
}

#[test]
fn the_playbook_passes_syntax_check_and_ansible_lint_production() {
    let (Some(playbook), Some(lint)) = (iac("ansible-playbook"), iac("ansible-lint")) else {
        return missing("the_playbook_passes_syntax_check_and_ansible_lint_production", "no .venv-iac with ansible-core and ansible-lint");
    };
    let dir = repo().join("ansible");
    let syntax = Command::new(playbook).args(["--syntax-check", "-i", "inventory.example.yml", "site.yml"]).current_dir(&dir).env("ANSIBLE_CONFIG", dir.join("ansible.cfg")).output().unwrap();
    assert!(syntax.status.success(), "{}{}", String::from_utf8_lossy(&syntax.stdout), String::from_utf8_lossy(&syntax.stderr));
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(lint)
        .args(["--profile", "production", "--offline", "--nocolor", "."])
        .current_dir(&dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "ansible-lint --profile production:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_playbook_installs_the_deployers_units() {
    for (template, unit) in [("roles/engine/templates/cairn-nats.service.j2", cairn_deployer_units::nats()), ("roles/node/templates/cairn-node.service.j2", cairn_deployer_units::node())] {
        let text = std::fs::read_to_string(repo().join("ansible").join(template)).unwrap();
        assert_eq!(text, unit, "{template} differs from the unit the deployer installs (deployer/src/configure.rs)");
    }
}

/// The deployer's unit texts, from its sources (the deployer is a binary crate).
mod cairn_deployer_units {
    fn unit(name: &str) -> String {
        let src = std::fs::read_to_string(super::repo().join("deployer/src/configure.rs")).unwrap();
        let start = src.find(&format!("pub fn {name}_unit() -> String {{")).unwrap();
        let body = &src[start..];
        let lit = &body[body.find("format!(").unwrap() + 8..];
        let lit = &lit[lit.find('"').unwrap() + 1..];
        let lit = &lit[..lit.find("\"\n    )").unwrap()];
        // The Rust string literal: line continuations, escapes, and the two constants.
        let mut s = String::new();
        let mut chars = lit.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('\n') => {
                        while chars.peek().is_some_and(|c| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some(o) => s.push(o),
                    None => {}
                }
            } else {
                s.push(c);
            }
        }
        s.replace("{BIN_DIR}", "/opt/cairn/bin").replace("{NATS_CONFIG}", "/etc/cairn/nats.conf").replace("{CONFIG}", "/etc/cairn/config.toml")
    }
    pub fn nats() -> String {
        unit("nats")
    }
    pub fn node() -> String {
        unit("node")
    }
}
