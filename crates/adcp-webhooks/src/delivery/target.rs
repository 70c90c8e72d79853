//! [`OutboxTarget`]: which database an outbox lives in, parsed once from what a user typed.
//!
//! Three forms are accepted, by [`Outbox::open`](super::Outbox::open), the `adcp-webhook outbox
//! --db` flag and `adcp-webhook bench --outbox`:
//! - a SQLite file path (`outbox.db`, `/var/lib/seller/outbox.db`);
//! - a `sqlite:` URL (`sqlite://outbox.db`, `sqlite:outbox.db?mode=rwc`, `sqlite::memory:`),
//!   handed to SQLite as it is;
//! - a `postgres://` or `postgresql://` URL (`postgres://user:password@host/db`).
//!
//! Displaying a target never shows a password (see [`crate::redact`]).
//!
//! ```
//! use adcp_webhooks::delivery::{OutboxTarget, TargetError};
//!
//! let pg: OutboxTarget = "postgres://outbox:hunter2@db.internal/seller".parse()?;
//! assert!(pg.is_postgres());
//! assert_eq!(pg.to_string(), "postgres://outbox:***@db.internal/seller");
//!
//! let file: OutboxTarget = "sqlite:/var/lib/seller/outbox.db".parse()?;
//! assert_eq!(file.sqlite_file(), Some(std::path::Path::new("/var/lib/seller/outbox.db")));
//!
//! assert!(matches!(
//!     "mysql://db/seller".parse::<OutboxTarget>(),
//!     Err(TargetError::UnknownScheme { .. })
//! ));
//! # Ok::<(), TargetError>(())
//! ```

use crate::redact::redact_url;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The forms a target may take, for error messages.
const FORMS: &str = "a SQLite file path (outbox.db), a sqlite: URL (sqlite://outbox.db) or a \
                     postgres:// URL (postgres://user:password@host/db)";

/// Where an outbox is stored. Make one with [`OutboxTarget::parse`] (or `str::parse`).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxTarget {
    /// A SQLite database file, named by its path.
    SqlitePath(String),
    /// A `sqlite:` URL, given to SQLite as it is.
    SqliteUrl(String),
    /// A `postgres://` or `postgresql://` URL (it may carry a password).
    Postgres(String),
}

/// Why a string is not an outbox target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Nothing was given.
    #[error("no outbox database was given; pass {FORMS}")]
    Empty,
    /// A URL of a database this crate does not store outboxes in.
    #[error("unknown outbox database scheme {scheme:?}; pass {FORMS}")]
    UnknownScheme {
        /// The scheme, as given.
        scheme: String,
    },
    /// `postgres:` or `postgresql:` without the `//` that starts the host. (The target is
    /// not repeated: a password in it could not be told apart reliably.)
    #[error(
        "a postgres: outbox database must be a URL with //, e.g. postgres://user:password@host/db; pass {FORMS}"
    )]
    MalformedPostgresUrl,
    /// A `sqlite:` URL naming no database.
    #[error("{target:?} names no SQLite database; write sqlite://PATH (e.g. sqlite://outbox.db)")]
    EmptySqlitePath {
        /// The target as given.
        target: String,
    },
}

impl OutboxTarget {
    /// Parse a target; see the [module documentation](self) for the forms.
    pub fn parse(target: &str) -> Result<Self, TargetError> {
        if target.trim().is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some((scheme, _)) = target.split_once("://")
            && is_scheme(scheme)
        {
            return match scheme.to_ascii_lowercase().as_str() {
                "postgres" | "postgresql" => Ok(Self::Postgres(target.to_owned())),
                "sqlite" => Self::sqlite_url(target),
                _ => Err(TargetError::UnknownScheme {
                    scheme: scheme.to_owned(),
                }),
            };
        }
        if let Some((scheme, _)) = target.split_once(':') {
            let lower = scheme.to_ascii_lowercase();
            if lower == "sqlite" {
                return Self::sqlite_url(target);
            }
            if lower == "postgres" || lower == "postgresql" {
                return Err(TargetError::MalformedPostgresUrl);
            }
        }
        Ok(Self::SqlitePath(target.to_owned()))
    }

    fn sqlite_url(target: &str) -> Result<Self, TargetError> {
        let rest = target.get("sqlite:".len()..).unwrap_or("");
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let database = rest.split('?').next().unwrap_or("");
        if database.is_empty() {
            return Err(TargetError::EmptySqlitePath {
                target: target.to_owned(),
            });
        }
        Ok(Self::SqliteUrl(target.to_owned()))
    }

    /// The target as given, password included: what the store connects with. Print the
    /// target itself (its `Display` masks the password), never this.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SqlitePath(s) | Self::SqliteUrl(s) | Self::Postgres(s) => s,
        }
    }

    /// The engine: `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::SqlitePath(_) | Self::SqliteUrl(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Whether this is a SQLite database that lives in memory only (`sqlite::memory:`,
    /// `mode=memory`).
    pub fn is_in_memory(&self) -> bool {
        match self {
            Self::SqliteUrl(url) => url.contains(":memory:") || url.contains("mode=memory"),
            Self::SqlitePath(_) | Self::Postgres(_) => false,
        }
    }

    /// The file a SQLite target names (the path, or a `sqlite:` URL's path without its query);
    /// `None` for an in-memory database and for PostgreSQL.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match self {
            Self::SqlitePath(path) => Some(Path::new(path)),
            Self::SqliteUrl(_) if self.is_in_memory() => None,
            Self::SqliteUrl(url) => {
                let rest = url.get("sqlite:".len()..)?;
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                rest.split('?').next().map(Path::new)
            }
            Self::Postgres(_) => None,
        }
    }
}

/// Whether `s` is a URL scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), so that a
/// path such as `./data://x` is not taken for a URL.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

impl FromStr for OutboxTarget {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The default outbox: the SQLite file `adcp-webhooks.db` (the SQLite store's
/// `DEFAULT_PATH`).
impl Default for OutboxTarget {
    fn default() -> Self {
        Self::SqlitePath("adcp-webhooks.db".to_owned())
    }
}

/// The target with any password masked.
impl fmt::Display for OutboxTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SqlitePath(s) | Self::SqliteUrl(s) => f.write_str(s),
            Self::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// As `Display`: the password never shows.
impl fmt::Debug for OutboxTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            Self::SqlitePath(_) => "SqlitePath",
            Self::SqliteUrl(_) => "SqliteUrl",
            Self::Postgres(_) => "Postgres",
        };
        f.debug_tuple(variant).field(&self.to_string()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<OutboxTarget, TargetError> {
        OutboxTarget::parse(s)
    }

    #[test]
    fn sqlite_paths() {
        for path in [
            "outbox.db",
            "/var/lib/seller/outbox.db",
            "./data/outbox.db",
            "C:\\seller\\outbox.db",
            "./odd://name.db",
        ] {
            let t = parse(path).expect(path);
            assert_eq!(t, OutboxTarget::SqlitePath(path.to_owned()));
            assert_eq!(t.engine(), "sqlite");
            assert!(!t.is_postgres() && !t.is_in_memory());
            assert_eq!(t.sqlite_file(), Some(Path::new(path)));
            assert_eq!(t.to_string(), path);
            assert_eq!(t.as_str(), path);
        }
        #[cfg(feature = "sqlite")]
        assert_eq!(
            OutboxTarget::default().sqlite_file(),
            Some(Path::new(crate::delivery::store::sqlite::DEFAULT_PATH))
        );
    }

    #[test]
    fn sqlite_urls() {
        for (url, file) in [
            ("sqlite://outbox.db", Some("outbox.db")),
            ("sqlite:outbox.db", Some("outbox.db")),
            ("SQLite:///tmp/o.db?mode=rwc", Some("/tmp/o.db")),
            ("sqlite::memory:", None),
            ("sqlite://shared.db?mode=memory&cache=shared", None),
        ] {
            let t = parse(url).expect(url);
            assert_eq!(t, OutboxTarget::SqliteUrl(url.to_owned()), "{url}");
            assert_eq!(t.engine(), "sqlite");
            assert_eq!(t.sqlite_file(), file.map(Path::new), "{url}");
            assert_eq!(t.is_in_memory(), file.is_none(), "{url}");
            assert_eq!(t.as_str(), url);
        }
    }

    #[test]
    fn postgres_urls_are_masked_when_shown() {
        for url in [
            "postgres://outbox:hunter2@db.internal/seller",
            "postgresql://outbox:hunter2@db.internal:5432/seller?sslmode=verify-full",
            "PostgreSQL://outbox:hunter2@db/seller",
        ] {
            let t = parse(url).expect(url);
            assert!(t.is_postgres());
            assert_eq!(t.engine(), "postgres");
            assert_eq!(t.sqlite_file(), None);
            assert_eq!(t.as_str(), url, "connects with the password");
            for shown in [t.to_string(), format!("{t:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
                assert!(shown.contains("outbox:***@"), "{shown}");
            }
        }
        assert_eq!(
            parse("postgres://db.internal/seller").map(|t| t.to_string()),
            Ok("postgres://db.internal/seller".to_owned())
        );
    }

    #[test]
    fn rejections_say_what_is_accepted() {
        let cases = [
            ("", TargetError::Empty),
            ("   ", TargetError::Empty),
            (
                "mysql://db/seller",
                TargetError::UnknownScheme {
                    scheme: "mysql".into(),
                },
            ),
            (
                "https://db/seller",
                TargetError::UnknownScheme {
                    scheme: "https".into(),
                },
            ),
            ("postgres:u:pw@db/seller", TargetError::MalformedPostgresUrl),
            ("PostgreSQL:db/seller", TargetError::MalformedPostgresUrl),
            (
                "sqlite:",
                TargetError::EmptySqlitePath {
                    target: "sqlite:".into(),
                },
            ),
            (
                "sqlite://?mode=rwc",
                TargetError::EmptySqlitePath {
                    target: "sqlite://?mode=rwc".into(),
                },
            ),
        ];
        for (input, want) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(err, want, "{input}");
            let text = err.to_string();
            if !matches!(err, TargetError::EmptySqlitePath { .. }) {
                assert!(text.contains("postgres://"), "{text}");
                assert!(text.contains("sqlite:"), "{text}");
            }
        }
        // A password in a malformed URL is not repeated in the error.
        let err = parse("postgresql:u:hunter2@db/x").expect_err("no //");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
