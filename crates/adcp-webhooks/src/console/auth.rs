//! Who may use the console: the login form, session cookies, CSRF tokens and the origin
//! check, applied to every route by one middleware ([`guard`]).
//!
//! - With an access token configured, every page and action needs the session cookie a
//!   successful login sets (the token is compared in constant time and never appears in a
//!   URL); without it a page redirects to the login form and anything else gets 401 or 403.
//! - Without a token (a console on a loopback address), a first visit gets a session of its
//!   own; requests must still name a loopback host (no DNS rebinding).
//! - Every POST needs the session's CSRF token in its form and, when the browser says where
//!   it comes from (`Origin`, `Sec-Fetch-Site`), the same origin. The cookie is
//!   `SameSite=Strict` and `HttpOnly`.

use super::html::{Chrome, esc, page};
use super::{ConsoleState, Form};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "adcp_console_session";
/// How long a session lasts.
const SESSION_MS: i64 = 12 * 3_600_000;
/// The most sessions kept at once.
const MAX_SESSIONS: usize = 10_000;
/// The largest form body accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A logged-in operator.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token every form must carry.
    pub csrf: String,
    /// The name the audit log records.
    pub actor: String,
    expires_ms: i64,
}

/// The live sessions, by cookie value.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn create(&self, actor: String, now_ms: i64) -> (String, Session) {
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            actor,
            expires_ms: now_ms + SESSION_MS,
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires_ms > now_ms);
        if map.len() >= MAX_SESSIONS {
            // Bounded memory whatever the number of visitors: the oldest session goes.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|s| s.expires_ms > now_ms).cloned()
    }

    fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare two secrets without revealing where they differ (or their lengths).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(state: &ConsoleState, id: &str, max_age: i64) -> String {
    let path = if state.config.base_path.is_empty() {
        "/"
    } else {
        &state.config.base_path
    };
    let secure = if state.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={id}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The host part of a `Host` header or an origin's authority, without the port.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn is_loopback_host(authority: &str) -> bool {
    let host = host_name(authority);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a state-changing request comes from the console's own pages, as far as the
/// browser says.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // No Origin header: not a browser's cross-site form (they all send one on POST).
        None => true,
        Some(origin) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><p>{}</p></body></html>",
        status.as_u16(),
        esc(message)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn login_redirect(state: &ConsoleState) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("{}/login", state.config.base_path),
        )],
    )
        .into_response()
}

/// The middleware in front of every route: see the module documentation.
pub(crate) async fn guard(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    next: Next,
) -> Response {
    let now = super::now_ms();
    let path = request.uri().path().to_owned();
    let path = path
        .strip_prefix(state.config.base_path.as_str())
        .unwrap_or(&path)
        .to_owned();
    let open = state.config.auth_token.is_none();
    if open {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return refuse(
                StatusCode::FORBIDDEN,
                "This console has no access token, so it answers only requests to a loopback \
                 address (127.0.0.1, [::1] or localhost).",
            );
        }
    }
    if path.starts_with("/assets/") {
        return next.run(request).await;
    }
    let is_post = request.method() == Method::POST;
    if is_post && !same_origin(request.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: this request comes from another site.",
        );
    }
    if path == "/login" {
        return next.run(request).await;
    }
    let session_id = cookie_value(request.headers());
    let session = session_id
        .as_deref()
        .and_then(|id| state.sessions.get(id, now));
    let Some(session) = session else {
        if open && request.method() == Method::GET {
            // A loopback console without a token: the first visit opens a session.
            let (id, session) = state.sessions.create("local".into(), now);
            let mut request = request;
            request.extensions_mut().insert(session);
            let mut response = next.run(request).await;
            if let Ok(v) = set_cookie(&state, &id, SESSION_MS / 1000).parse() {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            return response;
        }
        return match request.method() {
            &Method::GET | &Method::HEAD if !path.starts_with("/events") => login_redirect(&state),
            &Method::GET | &Method::HEAD => {
                refuse(StatusCode::UNAUTHORIZED, "Log in to use the console.")
            }
            _ => refuse(StatusCode::FORBIDDEN, "Log in to use the console."),
        };
    };
    let (mut parts, body) = request.into_parts();
    if is_post {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
        };
        let form = Form::parse(&bytes);
        if !same_secret(form.get("csrf").unwrap_or(""), &session.csrf) {
            return refuse(
                StatusCode::FORBIDDEN,
                "Refused: the form's CSRF token is missing or wrong; reload the page and try again.",
            );
        }
        parts.extensions.insert(session);
        parts.extensions.insert(form);
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

fn login_page(state: &ConsoleState, message: Option<&str>) -> String {
    let note = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "{note}<form method=\"post\" action=\"{}/login\" class=\"login\">\
         <label>Access token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <label>Your name (for the audit log) <input type=\"text\" name=\"name\" maxlength=\"64\"></label>\
         <button type=\"submit\">Log in</button></form>",
        esc(&state.config.base_path)
    );
    let chrome = Chrome {
        base: &state.config.base_path,
        csrf: None,
        actor: None,
    };
    page(&chrome, "Log in", "", &body)
}

/// `GET /login`.
pub(crate) async fn login_form(State(state): State<Arc<ConsoleState>>) -> Response {
    if state.config.auth_token.is_none() {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("{}/", state.config.base_path))],
        )
            .into_response();
    }
    super::html_response(StatusCode::OK, login_page(&state, None))
}

/// `POST /login`: the token and a name; sets the session cookie. Failed logins are limited
/// per client address (see [`super::throttle`]).
pub(crate) async fn login(
    State(state): State<Arc<ConsoleState>>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let Some(expected) = state.config.auth_token.as_deref() else {
        return login_redirect(&state);
    };
    let client = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    let now = state.config.clock.now_unix().saturating_mul(1000);
    if let Err(wait) = state.logins.check(client, now) {
        let mut response = super::html_response(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(
                &state,
                Some(&format!(
                    "Too many failed logins from your address: try again in {wait} s."
                )),
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let form = Form::parse(&body);
    if !same_secret(form.get("token").unwrap_or(""), expected) {
        state.logins.failed(client, now);
        return super::html_response(
            StatusCode::UNAUTHORIZED,
            login_page(
                &state,
                Some("That token is not the console's access token."),
            ),
        );
    }
    state.logins.succeeded(client);
    let name: String = form
        .get("name")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let actor = if name.trim().is_empty() {
        "operator".to_owned()
    } else {
        name.trim().to_owned()
    };
    let (id, _) = state.sessions.create(actor, super::now_ms());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("{}/", state.config.base_path)),
            (
                header::SET_COOKIE,
                set_cookie(&state, &id, SESSION_MS / 1000),
            ),
        ],
    )
        .into_response()
}

/// `POST /logout`.
pub(crate) async fn logout(State(state): State<Arc<ConsoleState>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers) {
        state.sessions.remove(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::LOCATION,
                format!("{}/login", state.config.base_path),
            ),
            (header::SET_COOKIE, set_cookie(&state, "", 0)),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", ""));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1:9470"));
        assert!(is_loopback_host("[::1]:9470"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("evil.example:9470"));
        assert!(!is_loopback_host("127.0.0.1.evil.example"));
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9470".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:9470".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:9470".parse().unwrap());
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
