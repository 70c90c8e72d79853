//! Rust side of the Python interop harness, shared by the integration tests of both crates
//! (`#[path = "../../../tests/interop/harness.rs"] mod harness;`).

#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root (both crates sit two levels below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter with `adcp` installed: `$ADCP_PYTHON`, else `.venv/bin/python`.
/// Without either, fails under CI (so CI can never pass without running interop) and returns
/// `None` after a note in a plain local `cargo test`.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADCP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "ADCP_PYTHON is not set under CI: run the tests through scripts/test.sh"
    );
    eprintln!("note: Python interop skipped: no .venv and ADCP_PYTHON unset (run scripts/test.sh)");
    None
}

/// Run `tests/interop/<script>` with `input` as JSON on stdin; its JSON answer.
pub fn run_py(python: &Path, script: &str, input: &Value) -> Value {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/interop").join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("python finished");
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}
