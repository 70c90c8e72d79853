//! The revocation-list fetcher against a loopback server: a signed list revokes a key, a list
//! with a bad signature is refused and the previous one kept, a 304 to `If-None-Match`
//! refreshes without a body, an unreachable server past `next_update` + grace fails closed, and
//! a private address is refused under the default policy.

use adcp_webhooks::clock::{Clock, FixedClock, RandomNonce};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{SignOptions, sign_webhook};
use adcp_webhooks::verify::{
    ErrorCode, ReceivedRequest, RevocationFetchError, RevocationFetcher, RevocationRefresh,
    RevocationSource, RevocationStatus, StaticJwks, WebhookVerifier,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

#[path = "support/docs_server.rs"]
mod docs_server;
use docs_server::{Doc, DocsServer};

fn loopback_policy() -> DestinationPolicy {
    DestinationPolicy::strict()
        .allow_http(true)
        .allowed_ports([])
        .allow_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::Ed25519, kid, KeyPurpose::WebhookSigning).expect("key")
}

fn jwks(keys: &[&SigningKey]) -> StaticJwks {
    StaticJwks::from_json(
        &json!({ "keys": keys.iter().map(|k| k.public_jwk().to_value()).collect::<Vec<_>>() }),
    )
    .expect("jwks")
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// A compact JWS of the revocation-list profile, signed by `signer`.
fn signed_list(
    signer: &SigningKey,
    issuer: &str,
    updated: i64,
    next: i64,
    revoked: &[&str],
) -> String {
    let header = json!({"alg": signer.algorithm().jose_name(), "typ": "adcp-gov-revocation+jws", "kid": signer.kid()});
    let payload = json!({
        "version": 1, "issuer": issuer, "updated": rfc3339(updated),
        "next_update": rfc3339(next), "revoked_kids": revoked, "revoked_jtis": [],
    });
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let p = URL_SAFE_NO_PAD.encode(payload.to_string());
    let sig = signer.sign(format!("{h}.{p}").as_bytes()).expect("sign");
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Sign a webhook with `key` at `clock` and verify it; the error code on failure.
fn verify(
    verifier: &WebhookVerifier,
    key: &SigningKey,
    clock: &dyn Clock,
) -> Result<(), ErrorCode> {
    let url = "https://buyer.example/adcp/webhook";
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let content_type = [("Content-Type", "application/json")];
    let signed = sign_webhook(
        "POST",
        url,
        &content_type[..],
        body,
        key,
        &SignOptions::default(),
        clock,
        &RandomNonce,
    )
    .expect("sign");
    let mut headers: Vec<(String, String)> =
        vec![("Content-Type".into(), "application/json".into())];
    headers.extend(
        signed
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    verifier
        .verify(&ReceivedRequest::new("POST", url, &headers, body))
        .map(|_| ())
        .map_err(|e| e.code())
}

const T0: i64 = 1_776_513_600;

struct Setup {
    base: String,
    /// Serves the list at `/revocations`.
    server: DocsServer,
    issuer_key: SigningKey,
    clock: FixedClock,
    fetcher: RevocationFetcher,
}

async fn setup(revoked: &[&str]) -> Setup {
    let server = DocsServer::start().await;
    let base = server.base().to_owned();
    let issuer_key = key("issuer-2026");
    server.put(
        "/revocations",
        Doc::new(
            "application/jose",
            signed_list(&issuer_key, &base, T0 - 60, T0 + 600, revoked),
        ),
    );
    let clock = FixedClock::new(T0);
    let fetcher = RevocationFetcher::builder(format!("{base}/revocations"), jwks(&[&issuer_key]))
        .destination_policy(loopback_policy())
        .allow_insecure_http(true)
        .clock(clock.clone())
        .build()
        .expect("fetcher");
    Setup {
        base,
        server,
        issuer_key,
        clock,
        fetcher,
    }
}

#[tokio::test]
async fn a_revoked_kid_is_refused_after_the_fetch() {
    let (old, new) = (key("seller-old"), key("seller-new"));
    let s = setup(&["seller-old"]).await;
    let verifier = WebhookVerifier::builder(jwks(&[&old, &new]))
        .clock(s.clock.clone())
        .revocation(s.fetcher.list())
        .build();
    // Nothing fetched yet: fail closed.
    assert_eq!(
        verify(&verifier, &new, &s.clock),
        Err(ErrorCode::RevocationStale)
    );
    let got = s.fetcher.refresh().await.expect("refresh");
    assert_eq!(
        got,
        RevocationRefresh::Updated {
            revoked: 1,
            next_update: T0 + 600
        }
    );
    assert_eq!(
        verify(&verifier, &old, &s.clock),
        Err(ErrorCode::KeyRevoked)
    );
    assert_eq!(verify(&verifier, &new, &s.clock), Ok(()));
}

#[tokio::test]
async fn a_list_with_a_bad_signature_is_refused_and_the_old_one_kept() {
    let s = setup(&["k1"]).await;
    s.fetcher.refresh().await.expect("first list");
    // A forger who does not hold the issuer key, using its kid, revokes k2 and un-revokes k1.
    let forger = key("issuer-2026");
    s.server.edit("/revocations", |doc| {
        doc.body = signed_list(&forger, &s.base, T0, T0 + 900, &["k2"])
    });
    match s.fetcher.refresh().await {
        Err(RevocationFetchError::BadSignature { kid }) => assert_eq!(kid, "issuer-2026"),
        other => panic!("expected a bad signature, got {other:?}"),
    }
    assert_eq!(s.fetcher.status("k1", T0), RevocationStatus::Revoked);
    assert_eq!(s.fetcher.status("k2", T0), RevocationStatus::Good);
    // And its deadline was not extended by the refused list.
    assert_eq!(
        s.fetcher.status("k2", T0 + 600 + 2 * 660 + 1),
        RevocationStatus::Stale
    );
    // A key the issuer set does not hold is refused too.
    let stranger = key("someone-else");
    s.server.edit("/revocations", |doc| {
        doc.body = signed_list(&stranger, &s.base, T0, T0 + 900, &[])
    });
    assert!(matches!(
        s.fetcher.refresh().await,
        Err(RevocationFetchError::UnknownKey { .. })
    ));
    assert_eq!(s.fetcher.status("k1", T0), RevocationStatus::Revoked);
}

#[tokio::test]
async fn etag_304_refreshes_without_a_body() {
    let s = setup(&["k1"]).await;
    s.server
        .edit("/revocations", |doc| doc.etag = Some("\"v1\"".into()));
    assert!(matches!(
        s.fetcher.refresh().await,
        Ok(RevocationRefresh::Updated { .. })
    ));
    assert_eq!(
        s.fetcher.refresh().await.expect("conditional"),
        RevocationRefresh::NotModified
    );
    let seen: Vec<Option<String>> = s
        .server
        .requests()
        .iter()
        .map(|r| r.header("if-none-match").map(str::to_owned))
        .collect();
    assert_eq!(seen, vec![None, Some("\"v1\"".to_owned())]);
    assert_eq!(s.fetcher.last_error(), None);
    assert_eq!(s.fetcher.status("k1", T0), RevocationStatus::Revoked);
    // A new list under a new ETag replaces it.
    s.server.edit("/revocations", |doc| {
        doc.etag = Some("\"v2\"".into());
        doc.body = signed_list(&s.issuer_key, &s.base, T0, T0 + 600, &[]);
    });
    assert!(matches!(
        s.fetcher.refresh().await,
        Ok(RevocationRefresh::Updated { revoked: 0, .. })
    ));
    assert_eq!(s.fetcher.status("k1", T0), RevocationStatus::Good);
}

#[tokio::test]
async fn an_unreachable_url_past_next_update_fails_closed() {
    let k = key("seller-2026");
    let mut s = setup(&[]).await;
    let verifier = WebhookVerifier::builder(jwks(&[&k]))
        .clock(s.clock.clone())
        .revocation(s.fetcher.list())
        .build();
    s.fetcher.refresh().await.expect("first list");
    s.server.stop().await;
    // Cadence 660 s, so the default grace is twice that.
    let deadline = T0 + 600 + 2 * 660;
    s.clock.set(deadline);
    assert!(s.fetcher.refresh().await.is_err(), "server is gone");
    assert_eq!(
        verify(&verifier, &k, &s.clock),
        Ok(()),
        "still within grace"
    );
    s.clock.set(deadline + 1);
    assert!(matches!(
        s.fetcher.refresh().await,
        Err(RevocationFetchError::Fetch(_))
    ));
    assert_eq!(
        verify(&verifier, &k, &s.clock),
        Err(ErrorCode::RevocationStale)
    );
    assert!(s.fetcher.last_error().is_some());
    assert!(s.fetcher.fetch_count() >= 3);
}

#[tokio::test]
async fn a_private_address_is_refused_under_the_default_policy() {
    let s = setup(&[]).await;
    // The loopback server, but under the default (strict) policy.
    let strict =
        RevocationFetcher::builder(format!("{}/revocations", s.base), jwks(&[&s.issuer_key]))
            .allow_insecure_http(true)
            .build()
            .expect("fetcher");
    assert!(matches!(
        strict.refresh().await,
        Err(RevocationFetchError::Refused(_))
    ));
    let internal = RevocationFetcher::new("https://10.1.2.3/revocations", jwks(&[&s.issuer_key]))
        .expect("fetcher");
    assert!(matches!(
        internal.refresh().await,
        Err(RevocationFetchError::Refused(_))
    ));
    assert!(matches!(
        RevocationFetcher::new("http://seller.example/revocations", jwks(&[])),
        Err(RevocationFetchError::BadUrl { .. })
    ));
    assert_eq!(strict.status("any", T0), RevocationStatus::Stale);
}

#[tokio::test]
async fn the_issuer_must_match_and_the_general_json_form_is_accepted() {
    let s = setup(&["k1"]).await;
    // The general JSON serialization of the same list.
    let compact = signed_list(&s.issuer_key, &s.base, T0 - 60, T0 + 600, &["k1"]);
    let parts: Vec<&str> = compact.split('.').collect();
    s.server.edit("/revocations", |doc| {
        doc.body = json!({
            "payload": parts[1], "signatures": [{"protected": parts[0], "signature": parts[2]}],
        })
        .to_string()
    });
    assert!(s.fetcher.refresh().await.is_ok());
    assert_eq!(s.fetcher.status("k1", T0), RevocationStatus::Revoked);
    s.server.edit("/revocations", |doc| {
        doc.body = signed_list(&s.issuer_key, "https://other.example", T0, T0 + 600, &[])
    });
    assert!(matches!(
        s.fetcher.refresh().await,
        Err(RevocationFetchError::Payload(_))
    ));
    assert_eq!(s.fetcher.status("k1", T0), RevocationStatus::Revoked);
}
