//! Serving a seller's public keys at its `jwks_uri` from the same binary (feature `axum`).
//!
//! [`jwks_router`] answers `GET /.well-known/jwks.json` with the [`KeyRing`]'s published keys
//! as they are at the moment of the request, so a rotation shows at once, with
//! `Cache-Control: public, max-age=...` (receivers cache within that bound) and a strong
//! `ETag` (a conditional `If-None-Match` gets `304 Not Modified`). Only public members are ever
//! served.
//!
//! ```no_run
//! use adcp_webhooks::keys::{Algorithm, KeyPurpose, KeyRing, SigningKey};
//! use adcp_webhooks::keys::publish::{JWKS_PATH, jwks_router};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::Ed25519, "seller-2026", KeyPurpose::WebhookSigning)?;
//! let ring = KeyRing::from(key);
//! let app = jwks_router(ring.clone()); // merge it into the seller's own router
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use super::KeyRing;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Duration;

/// Where a JWK Set is served by convention (and where the AdCP SDKs look by default).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long receivers may cache the set unless told otherwise: 5 minutes, short enough that a
/// newly published key is seen well before it signs (publish, wait at least this, switch).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Published {
    ring: KeyRing,
    cache_control: HeaderValue,
}

/// A router serving `ring`'s published keys at [`JWKS_PATH`] with [`DEFAULT_MAX_AGE`].
pub fn jwks_router(ring: KeyRing) -> Router {
    jwks_router_at(JWKS_PATH, ring, DEFAULT_MAX_AGE)
}

/// A router serving `ring`'s published keys at `path`, cacheable for `max_age`.
pub fn jwks_router_at(path: &str, ring: KeyRing, max_age: Duration) -> Router {
    let cache_control = HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=300"));
    Router::new()
        .route(path, get(serve_jwks))
        .with_state(Published {
            ring,
            cache_control,
        })
}

async fn serve_jwks(State(p): State<Published>, request: HeaderMap) -> Response {
    let set = p.ring.current().jwks();
    let body = match serde_json::to_vec(&set) {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let etag = {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(&body);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    };
    let etag_value =
        HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let matches = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        });
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(header::CACHE_CONTROL, p.cache_control.clone());
    headers.insert(header::ETAG, etag_value);
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    (StatusCode::OK, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeyPurpose, KeySet, SigningKey};
    use std::sync::Arc;
    use tower::Service as _;

    async fn call(app: &Router, req: axum::http::Request<axum::body::Body>) -> Response {
        let mut svc = app.clone();
        std::future::poll_fn(|cx| {
            tower::Service::<axum::http::Request<axum::body::Body>>::poll_ready(&mut svc, cx)
        })
        .await
        .expect("ready");
        svc.call(req).await.expect("infallible")
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(Algorithm::EcdsaP256Sha256, kid, KeyPurpose::WebhookSigning)
            .expect("key")
    }

    async fn get(app: &Router, etag: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = axum::http::Request::get(JWKS_PATH);
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        let resp = call(app, req.body(axum::body::Body::empty()).expect("request")).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    #[tokio::test]
    async fn serves_the_current_public_set_with_cache_headers() {
        let (old, new) = (key("k-old"), key("k-new"));
        let ring = KeyRing::from(old.clone());
        let app = jwks_router(ring.clone());
        let (status, headers, body) = get(&app, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(headers[header::CONTENT_TYPE], "application/jwk-set+json");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["keys"][0]["kid"], "k-old");
        assert!(json["keys"][0].get("d").is_none(), "no private member");
        assert!(!String::from_utf8_lossy(&body).contains("\"d\""));

        // Unchanged: a conditional request gets 304; after a rotation, the new set.
        let etag = headers[header::ETAG].to_str().expect("etag").to_owned();
        assert_eq!(get(&app, Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
        ring.rotate(KeySet::new(Arc::new(new), [old.public_jwk()]).expect("set"));
        let (status, headers, body) = get(&app, Some(&etag)).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(headers[header::ETAG].to_str().expect("etag"), etag);
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let kids: Vec<&str> = json["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid"))
            .collect();
        assert_eq!(kids, ["k-new", "k-old"]);
    }

    #[tokio::test]
    async fn the_path_and_max_age_are_configurable() {
        let app = jwks_router_at("/keys", KeyRing::from(key("k")), Duration::from_secs(60));
        let req = axum::http::Request::get("/keys")
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = call(&app, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, max-age=60");
    }
}
