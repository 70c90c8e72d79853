//! URLs made safe to print: the password of `scheme://user:password@host/...` becomes `***`.
//!
//! Database URLs, proxy URLs and outbox targets can carry a password; every message, log line
//! and `Debug` output that shows one goes through [`redact_url`]. The function is pure string
//! work: it never fails, and it needs no URL parser, so it also masks what a parser would
//! reject (a malformed URL is exactly the kind that ends up in an error message).
//!
//! ```
//! use adcp_webhooks::redact::redact_url;
//!
//! assert_eq!(redact_url("postgres://outbox:hunter2@db.internal/seller"), "postgres://outbox:***@db.internal/seller");
//! assert_eq!(redact_url("http://proxy.internal:3128"), "http://proxy.internal:3128");
//! assert_eq!(redact_url("/var/lib/seller/outbox.db"), "/var/lib/seller/outbox.db");
//! ```

/// What replaces a password.
pub const MASK: &str = "***";

/// `raw` with the password of its userinfo (`user:password@`) replaced by [`MASK`]; anything
/// else (no scheme, no userinfo, a user name alone) comes back unchanged.
///
/// The authority is what follows `scheme://` up to the first `/`, `?`, `#` or `\`, and its
/// userinfo ends at the last `@` in it, as URL parsers read it. A password holding an
/// unescaped `/`, `?` or `#` makes the URL malformed; it is masked too (up to the last `@`
/// before any `?` or `#`), since such a string still ends up in error messages.
pub fn redact_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if let Some((userinfo, host)) = authority.rsplit_once('@') {
        return match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:{MASK}@{host}{tail}"),
            None => raw.to_owned(),
        };
    }
    // No `@` in the authority. If it reads `user:pa` with a non-numeric "port" and an `@`
    // follows before the query, the password went on past an unescaped `/`: mask it all.
    if let Some((user, after_colon)) = authority.split_once(':')
        && !user.starts_with('[')
        && !after_colon.bytes().all(|b| b.is_ascii_digit())
    {
        let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest.get(..before_query).and_then(|r| r.rfind('@')) {
            let after = rest.get(at + 1..).unwrap_or("");
            return format!("{scheme}://{user}:{MASK}@{after}");
        }
    }
    raw.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        for (raw, want) in [
            ("postgres://u:secret@db/x", "postgres://u:***@db/x"),
            (
                "postgresql://outbox:pw@db.internal:5432/seller?sslmode=verify-full",
                "postgresql://outbox:***@db.internal:5432/seller?sslmode=verify-full",
            ),
            ("http://u:p@proxy:3128", "http://u:***@proxy:3128"),
            // The userinfo ends at the last `@` of the authority.
            ("postgres://u:p@ss@db/x", "postgres://u:***@db/x"),
            // An empty password is still a password field.
            ("postgres://u:@db/x", "postgres://u:***@db/x"),
            // Malformed (an unclosed IPv6 literal): masked all the same.
            (
                "postgres://adcp:Pg-S3cret@[::1/outbox",
                "postgres://adcp:***@[::1/outbox",
            ),
            // A password with an unescaped `/` runs past the authority.
            ("postgres://u:pa/ss@db/x", "postgres://u:***@db/x"),
        ] {
            assert_eq!(redact_url(raw), want, "{raw}");
        }
    }

    #[test]
    fn what_has_no_password_is_unchanged() {
        for raw in [
            "postgres://outbox@db.internal/seller",
            "postgres://db.internal:5432/seller",
            "postgres://[::1]:5432/seller",
            "http://proxy.internal:3128",
            "https://buyer.example:8443/users/@me:x",
            "https://buyer.example/hook?next=a:b@c",
            "sqlite://outbox.db",
            "sqlite::memory:",
            "/var/lib/seller/outbox.db",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(raw), raw);
        }
    }

    #[test]
    fn the_secret_never_survives() {
        let secret = "Zq9-secret";
        for raw in [
            format!("postgres://user:{secret}@db/x"),
            format!("postgres://user:{secret}@[::1/x"),
            format!("postgres://user:{secret}@@db/x"),
            format!("http://user:{secret}@proxy"),
            format!("postgres://user:a/{secret}@db/x"),
        ] {
            let shown = redact_url(&raw);
            assert!(!shown.contains(secret), "{raw} -> {shown}");
            assert!(shown.contains(MASK), "{raw} -> {shown}");
        }
    }
}
