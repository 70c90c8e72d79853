//! What the CLI's integration tests share: the `adcp-webhook` binary, a running `receive`
//! process, a scratch PostgreSQL database, and a loopback application behind `--forward`.
//! Each test binary includes this with `mod support;` and uses what it needs.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"));
    c.env_remove("ADCP_KEY_PASSPHRASE");
    c
}

/// A running `receive` server: [`Receiver::stop`] stops it with SIGTERM; one still running when
/// dropped (a failed test) is killed.
pub struct Receiver {
    /// The process.
    pub child: std::process::Child,
    /// The address it listens on (`127.0.0.1:PORT`).
    pub addr: String,
}

impl Receiver {
    pub fn start(jwks: &Path, log: &Path) -> Self {
        Self::start_with(jwks, log, &[])
    }

    pub fn start_with(jwks: &Path, log: &Path, extra: &[&str]) -> Self {
        let mut child = bin()
            .args(["receive", "--listen", "127.0.0.1:0", "--jwks"])
            .arg(jwks)
            .arg("--log")
            .arg(log)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn receive");
        // The address the server bound, from its stderr line `... listening on http://ADDR`.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "receive exited without saying where it listens:\n{seen}"
            );
            if let Some(addr) = line
                .split("listening on http://")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
            {
                break addr.to_owned();
            }
            seen.push_str(&line);
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
        });
        Self { child, addr }
    }

    /// GET `path`, returning (status, raw response).
    pub fn get(&self, path: &str) -> (u16, String) {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        self.exchange(req.as_bytes(), b"")
    }

    /// Send a request head and body on a fresh connection; the status and the whole answer.
    pub fn exchange(&self, head: &[u8], body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head).unwrap();
        s.write_all(body).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, resp)
    }

    /// POST `body` with `headers`, returning (status, raw response).
    pub fn post(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.exchange(req.as_bytes(), body)
    }

    /// Kill the process with SIGKILL (nothing runs after it: no shutdown, no cleanup).
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL receive");
        self.child.wait().expect("reap receive");
    }

    /// Stop with SIGTERM and wait for the exit (a graceful shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        // A hang guard, not a timing check: a clean stop takes milliseconds.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "receive did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The JSON lines of a `receive --log` file.
pub fn log_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
        .collect()
}

/// Run `f` with the URL of a fresh database on `ADCP_TEST_POSTGRES_URL`, dropped afterwards.
pub fn with_postgres_database(f: impl FnOnce(&str) + std::panic::UnwindSafe) {
    let admin = std::env::var("ADCP_TEST_POSTGRES_URL").expect(
        "ADCP_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server (an admin URL \
         such as postgres://postgres@127.0.0.1:5432/postgres)",
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("adcp_rx_{}_{nanos}", std::process::id());
    let (base, _) = admin
        .rsplit_once('/')
        .expect("the admin URL has a database path");
    let url = format!("{base}/{name}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin_sql = |sql: String| {
        rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
            let _ = conn.close().await;
        })
    };
    admin_sql(format!("CREATE DATABASE {name}"));
    let run = std::panic::catch_unwind(|| f(&url));
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

/// A loopback application behind `receive --forward`: records each request (head and body)
/// and answers with the next scripted behaviour (`ok` 204 by default, `fail` 500, `block`
/// waits for a signal, then 204).
pub struct App {
    /// The address it listens on.
    pub addr: String,
    seen: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    /// The behaviour of the next requests, in order (`ok` when none is queued).
    pub script: std::sync::mpsc::Sender<&'static str>,
    /// Lets a `block`ed request answer.
    pub unblock: std::sync::mpsc::Sender<()>,
}

impl App {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let (script, script_rx) = std::sync::mpsc::channel::<&'static str>();
        let (unblock, unblock_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let behaviour = script_rx.try_recv().unwrap_or("ok");
                if seen_tx.send((head, body)).is_err() {
                    return;
                }
                if behaviour == "block" {
                    let _ = unblock_rx.recv_timeout(Duration::from_secs(60));
                }
                let status = if behaviour == "fail" {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Self {
            addr,
            seen,
            script,
            unblock,
        }
    }

    pub fn next(&self) -> (String, Vec<u8>) {
        self.seen
            .recv_timeout(Duration::from_secs(30))
            .expect("the application got a request")
    }

    pub fn nothing_more(&self) {
        assert!(
            self.seen.try_recv().is_err(),
            "the application got another request"
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `adcp-webhook keygen` of an Ed25519 key `kid` into `dir`: the PEM and the public JWKS paths.
pub fn keygen(dir: &Path, kid: &str) -> (PathBuf, PathBuf) {
    let pem = dir.join(format!("{kid}.pem"));
    let jwks = dir.join(format!("{kid}.jwks.json"));
    let o = bin()
        .args(["keygen", "--alg", "ed25519", "--kid", kid, "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .expect("run keygen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (pem, jwks)
}

/// One HTTP/1.1 request read off a connection: its target, its headers (names lowercased) and
/// its body (by `Content-Length`). `None` when the connection closed or broke first.
pub fn read_request(
    reader: &mut impl BufRead,
) -> Option<(String, std::collections::BTreeMap<String, String>, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = std::collections::BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((target, headers, body))
}

/// Sign `body` for `url` with `key_pem`/`kid` through the CLI's own `sign` command.
pub fn signed(key_pem: &Path, kid: &str, url: &str, body: &str) -> Vec<(String, String)> {
    let o = bin()
        .args(["sign", "--key"])
        .arg(key_pem)
        .args(["--kid", kid, "--url", url, "--body", body])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// The JSON a command printed on stdout, after checking it succeeded (its output shown when not).
pub fn ok_json(o: std::process::Output) -> Value {
    assert!(
        o.status.success(),
        "command failed ({}): {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}
