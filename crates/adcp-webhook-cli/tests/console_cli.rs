//! `adcp-webhook console`: it refuses a non-loopback address without an access token, and
//! with one it serves nothing but the login form to a visitor without a session.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use support::{Receiver, bin};

#[test]
fn a_non_loopback_address_without_token_is_refused() {
    let out = bin()
        .args([
            "console",
            "--listen",
            "0.0.0.0:0",
            "--db",
            "no-such-outbox.db",
        ])
        .env_remove("ADCP_CONSOLE_TOKEN")
        .output()
        .expect("run console");
    assert_eq!(out.status.code(), Some(2), "exit 2 (usage)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--auth-token") && stderr.contains("ADCP_CONSOLE_TOKEN"),
        "says what to do: {stderr}"
    );
}

#[test]
fn with_a_token_a_visitor_gets_only_the_login_form() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("outbox.db");
    let migrated = bin()
        .args(["outbox", "migrate", "--db"])
        .arg(&db)
        .output()
        .expect("migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    let mut child = bin()
        .args(["console", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("ADCP_CONSOLE_TOKEN", "a-console-token-for-the-cli-test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn console");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        let read = stderr.read_line(&mut line).expect("read stderr");
        assert!(read > 0, "console exited without saying where it listens");
        if let Some(addr) = line
            .split("listening on http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
        {
            break addr.to_owned();
        }
    };
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    // Receiver's raw HTTP helpers speak to any loopback server; this one is the console.
    let console = Receiver { child, addr };
    let (status, page) = console.get("/");
    assert_eq!(status, 303, "{page}");
    assert!(
        page.to_ascii_lowercase().contains("location: /login"),
        "{page}"
    );
    let (status, page) = console.get("/deliveries");
    assert_eq!(status, 303, "{page}");
    let (status, page) = console.get("/login");
    assert_eq!(status, 200);
    assert!(page.contains("Access token") && page.contains("content-security-policy"));
    let (status, _) = console.post("/destinations/disable", &[], b"key=x");
    assert_eq!(status, 403);
}
