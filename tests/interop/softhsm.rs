//! SoftHSM2 for the PKCS#11 tests of both crates
//! (`#[path = "../../../tests/interop/softhsm.rs"] mod softhsm;`).
//!
//! [`run_softhsm`] is the `main` of a PKCS#11 test binary (`harness = false`): with SoftHSM2
//! installed (`softhsm2-util` on the PATH and its module found) the tests run; without it they
//! fail when `CI` is set (`scripts/test.sh` installs it), and otherwise are reported as
//! ignored with a `SKIPPED` line on stderr saying how to run them.
//!
//! [`Token::new`] makes a fresh token in a temporary directory of its own: a `softhsm2.conf`
//! pointing there, `SOFTHSM2_CONF` set for this process (before the module is first loaded;
//! SoftHSM reads it then), `softhsm2-util --init-token --free`, and a PIN file.

#![allow(dead_code)]

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The user PIN of test tokens.
pub const USER_PIN: &str = "4321";
/// The security officer PIN of test tokens.
pub const SO_PIN: &str = "87654321";

/// The SoftHSM2 module: `$ADCP_PKCS11_MODULE`, else the distribution's paths.
pub fn module() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADCP_PKCS11_MODULE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn util_present() -> bool {
    Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

const HOW_TO_RUN: &str = "install SoftHSM2 (`apt-get install softhsm2`; `bash scripts/test.sh` \
     does it), or set ADCP_PKCS11_MODULE to its libsofthsm2.so";

/// One PKCS#11 test: its name and its body, which gets the module path.
pub type SoftHsmTest = (&'static str, fn(&Path));

/// The SoftHSM2 module when SoftHSM2 is usable here (module and `softhsm2-util` present).
pub fn available() -> Option<PathBuf> {
    module().filter(|_| util_present())
}

/// The `main` of a PKCS#11 test binary.
pub fn run_softhsm(tests: &[SoftHsmTest]) -> ExitCode {
    let args = Arguments::from_args();
    let module = available();
    let skip = module.is_none() && !in_ci();
    if skip && !args.list {
        eprintln!(
            "SKIPPED: {} PKCS#11 test(s) in {}: SoftHSM2 is not installed; {HOW_TO_RUN}. They \
             are counted as skipped (ignored); with CI set they fail instead.",
            tests.len(),
            env!("CARGO_CRATE_NAME"),
        );
    }
    let trials = tests
        .iter()
        .map(|&(name, body)| {
            let module = module.clone();
            Trial::test(name, move || {
                let module = module.ok_or_else(|| {
                    Failed::from(format!("SoftHSM2 is not installed; {HOW_TO_RUN}"))
                })?;
                body(&module);
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// A fresh SoftHSM2 token in its own directory, removed on drop.
pub struct Token {
    /// The directory holding the config, the token store and the PIN file.
    pub dir: PathBuf,
    /// The `softhsm2.conf` to point `SOFTHSM2_CONF` at.
    pub conf: PathBuf,
    /// A file holding the user PIN.
    pub pin_file: PathBuf,
    /// The token label.
    pub label: String,
}

impl Token {
    /// Make a token labelled `label` in a new directory. Does not touch the environment: set
    /// `SOFTHSM2_CONF` to [`conf`](Self::conf) (in-process: [`Token::use_in_process`]; child
    /// processes: `.env("SOFTHSM2_CONF", &token.conf)`).
    pub fn new(label: &str) -> Token {
        let dir = std::env::temp_dir().join(format!(
            "adcp-softhsm-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ])
            .output()
            .expect("run softhsm2-util");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let pin_file = dir.join("pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).expect("pin file");
        Token {
            dir,
            conf,
            pin_file,
            label: label.to_owned(),
        }
    }

    /// Point this process's `SOFTHSM2_CONF` at the token. SoftHSM reads it when the module is
    /// first initialized, so call it before the first load, once per process.
    pub fn use_in_process(&self) {
        // SAFETY: called once, before the module is loaded and before any thread of the test
        // reads the environment.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &self.conf) };
    }

    /// The URI of the key labelled `object` on this token, with the PIN from the PIN file.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?pin-source=file:{}",
            self.label,
            self.pin_file.display()
        )
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
