//! Rust side of the Python interop harness, shared by the integration tests of both crates
//! (`#[path = "../../../tests/interop/harness.rs"] mod harness;`).
//!
//! Every test that needs the official Python SDK goes through [`run_interop`], the `main` of
//! its test binary (`harness = false` in Cargo.toml): it finds the interpreter once, through
//! [`python`], and decides for all of the binary's tests what happens without one.
//!
//! - Found (`$ADCP_PYTHON`, else `<repo>/.venv/bin/python`): the tests run.
//! - Missing and `CI` set (`scripts/test.sh` exports `CI=1`): every test runs and fails, saying
//!   what to set, so CI can never pass without running them.
//! - Missing outside CI: the tests are reported as ignored, so the run's summary counts them
//!   (`cargo nextest`: "N skipped"; `cargo test`: "N ignored"), and a `SKIPPED` line on stderr
//!   says why and how to run them. They never pass without having run.

#![allow(dead_code)]

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The repository root (both crates sit two levels below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter with `adcp` installed: `$ADCP_PYTHON`, else `<repo>/.venv/bin/python`
/// when it exists; `None` without either. The one place that reads `ADCP_PYTHON`.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADCP_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = repo_root().join(".venv/bin/python");
    venv.exists().then_some(venv)
}

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

const HOW_TO_RUN: &str = "run `bash scripts/test.sh` once (it builds .venv/ with the pinned \
     SDK), or export ADCP_PYTHON=<a Python with adcp 9.2.0>";

/// One interop test: its name and its body, which gets the interpreter.
pub type InteropTest = (&'static str, fn(&Path));

/// The `main` of an interop test binary: runs `tests` as described in the module docs and
/// returns the harness's exit code.
pub fn run_interop(tests: &[InteropTest]) -> ExitCode {
    let args = Arguments::from_args();
    let python = python();
    let skip = python.is_none() && !in_ci();
    if skip && !args.list {
        eprintln!(
            "SKIPPED: {} Python interop test(s) in {}: ADCP_PYTHON is not set and there is no \
             .venv/bin/python; {HOW_TO_RUN}. They are counted as skipped (ignored) in the \
             summary; with CI set they fail instead.",
            tests.len(),
            env!("CARGO_CRATE_NAME"),
        );
    }
    let trials = tests
        .iter()
        .map(|&(name, body)| {
            let python = python.clone();
            Trial::test(name, move || {
                let python = python.ok_or_else(|| {
                    Failed::from(format!(
                        "no Python for the interop tests: ADCP_PYTHON is not set and there is \
                         no .venv/bin/python{}; {HOW_TO_RUN}",
                        if in_ci() {
                            " (CI is set, so this fails instead of skipping)"
                        } else {
                            ""
                        }
                    ))
                })?;
                body(&python);
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
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
