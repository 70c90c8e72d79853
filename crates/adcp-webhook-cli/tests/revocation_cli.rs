//! `adcp-webhook receive --revocation-url`: a key on the issuer's signed revocation list is
//! refused with 401 and `webhook_signature_key_revoked`; a key not on it is accepted; a list
//! that cannot be fetched stops `receive` at start-up with a clear error.

mod support;

use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use support::{Receiver, bin, keygen, log_lines, signed};

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A compact JWS revocation list from `issuer`, signed by `key`.
fn signed_list(key: &SigningKey, issuer: &str, revoked: &[&str]) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = json!({"alg": "EdDSA", "typ": "adcp-gov-revocation+jws", "kid": key.kid()});
    let payload = json!({
        "version": 1, "issuer": issuer, "updated": rfc3339(now - 60),
        "next_update": rfc3339(now + 3600), "revoked_kids": revoked,
    });
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let p = URL_SAFE_NO_PAD.encode(payload.to_string());
    let sig = key.sign(format!("{h}.{p}").as_bytes()).unwrap();
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn write_jwks(path: &Path, keys: &[Value]) {
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

fn jwks_keys(path: &Path) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

#[test]
fn receive_refuses_a_key_on_the_revocation_list() {
    let dir = tempfile::tempdir().unwrap();
    let (old_pem, old_jwks) = keygen(dir.path(), "seller-old");
    let (new_pem, new_jwks) = keygen(dir.path(), "seller-new");
    let sender_jwks = dir.path().join("sender.jwks.json");
    write_jwks(
        &sender_jwks,
        &[jwks_keys(&old_jwks), jwks_keys(&new_jwks)].concat(),
    );
    let issuer = SigningKey::generate(
        Algorithm::Ed25519,
        "issuer-2026",
        KeyPurpose::WebhookSigning,
    )
    .unwrap();
    let issuer_jwks = dir.path().join("issuer.jwks.json");
    write_jwks(&issuer_jwks, &[issuer.public_jwk().to_value()]);
    let base = serve_signed(&issuer, &["seller-old"]);
    let log = dir.path().join("receive.log");
    let url_flag = format!("{base}/revocations");
    let issuer_flag = issuer_jwks.to_str().unwrap().to_owned();
    let server = Receiver::start_with(
        &sender_jwks,
        &log,
        &[
            "--revocation-url",
            &url_flag,
            "--revocation-jwks",
            &issuer_flag,
            "--allow-http",
            "--allow-private-destinations",
        ],
    );
    let url = format!("http://{}/adcp/webhook", server.addr);
    let body = r#"{"idempotency_key":"whk_cli_revoked_00001","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let (status, resp) = server.post(
        "/adcp/webhook",
        &signed(&old_pem, "seller-old", &url, body),
        body.as_bytes(),
    );
    assert_eq!(status, 401, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains(r#"error="webhook_signature_key_revoked""#),
        "{resp}"
    );
    let (status, resp) = server.post(
        "/adcp/webhook",
        &signed(&new_pem, "seller-new", &url, body),
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{resp}");
    assert!(server.stop().success());
    let lines = log_lines(&log);
    assert_eq!(lines[0]["error_code"], "webhook_signature_key_revoked");
    assert_eq!(lines[1]["outcome"], "accepted");
}

/// Serve, to at most 20 connections on loopback, a list signed by `issuer` that names the
/// server's own origin as its issuer; the base URL.
fn serve_signed(issuer: &SigningKey, revoked: &[&str]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = signed_list(issuer, &base, revoked);
    std::thread::spawn(move || {
        for sock in listener.incoming().take(20) {
            let Ok(mut sock) = sock else { continue };
            let mut buf = [0u8; 4096];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                match sock.read(&mut buf[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let _ = write!(
                sock,
                "HTTP/1.1 200 OK\r\nContent-Type: application/jose\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn receive_stops_when_the_list_cannot_be_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sender_jwks) = keygen(dir.path(), "seller");
    let issuer = SigningKey::generate(
        Algorithm::Ed25519,
        "issuer-2026",
        KeyPurpose::WebhookSigning,
    )
    .unwrap();
    // The receiver trusts another issuer key than the one that signed the list.
    let other = SigningKey::generate(
        Algorithm::Ed25519,
        "issuer-2026",
        KeyPurpose::WebhookSigning,
    )
    .unwrap();
    let issuer_jwks = dir.path().join("issuer.jwks.json");
    write_jwks(&issuer_jwks, &[other.public_jwk().to_value()]);
    let base = serve_signed(&issuer, &[]);
    let o = bin()
        .args(["receive", "--listen", "127.0.0.1:0", "--jwks"])
        .arg(&sender_jwks)
        .args([
            "--revocation-url",
            &format!("{base}/revocations"),
            "--revocation-jwks",
        ])
        .arg(&issuer_jwks)
        .args(["--allow-http", "--allow-private-destinations"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("signature does not verify"), "{stderr}");
}
