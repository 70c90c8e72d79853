//! PKCS#11 URIs (RFC 7512): which token, which key, where the PIN comes from.
//!
//! `pkcs11:token=seller;object=webhook-2026?pin-source=file:/run/pin` names the key labelled
//! `webhook-2026` on the token labelled `seller`, with the user PIN read from `/run/pin`.
//! Pure parsing, compiled with or without the `pkcs11` feature.

use std::fmt;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// A parsed `pkcs11:` URI. Path attributes select the token and the key; query attributes say
/// how to log in and which module to load.
///
/// ```
/// use adcp_webhooks::keys::{Pkcs11Uri, PinSource};
/// let uri: Pkcs11Uri = "pkcs11:token=seller;object=webhook-2026?pin-source=file:/run/pin".parse()?;
/// assert_eq!(uri.token.as_deref(), Some("seller"));
/// assert_eq!(uri.object.as_deref(), Some("webhook-2026"));
/// assert!(matches!(uri.pin, Some(PinSource::File(ref p)) if p.as_os_str() == "/run/pin"));
/// # Ok::<(), adcp_webhooks::keys::Pkcs11UriError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `serial`: the token serial number.
    pub serial: Option<String>,
    /// `manufacturer`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `model`: the token model.
    pub model: Option<String>,
    /// `slot-id`: the slot number.
    pub slot_id: Option<u64>,
    /// `object`: the key label (`CKA_LABEL`); the default key id.
    pub object: Option<String>,
    /// `id`: the key id (`CKA_ID`) bytes.
    pub id: Option<Vec<u8>>,
    /// `type`: the object class (`private`, `public`, ...); a signing key is `private`.
    pub object_type: Option<String>,
    /// `pin-source` or `pin-value`: where the user PIN comes from.
    pub pin: Option<PinSource>,
    /// `module-path`: the PKCS#11 module (shared library) to load.
    pub module_path: Option<PathBuf>,
}

/// Where a PKCS#11 user PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `pin-source=file:/path` (or a bare path): the file's first line.
    File(PathBuf),
    /// `pin-value=...`: the PIN itself, in the URI (RFC 7512 allows it; keep such URIs out of
    /// logs and shell history).
    Value(Zeroizing<String>),
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PinSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl PinSource {
    /// Read the PIN: the value, or the first line of the file (trailing newline dropped).
    pub fn read(&self) -> Result<Zeroizing<String>, Pkcs11UriError> {
        match self {
            PinSource::Value(v) => Ok(v.clone()),
            PinSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Pkcs11UriError::PinFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?);
                let line = text.lines().next().unwrap_or("");
                Ok(Zeroizing::new(line.to_owned()))
            }
        }
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI with the PIN value, if any, replaced by `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::new();
        let mut push = |name: &str, v: &Option<String>| {
            if let Some(v) = v {
                path.push(format!("{name}={}", encode(v.as_bytes())));
            }
        };
        push("token", &self.token);
        push("serial", &self.serial);
        push("manufacturer", &self.manufacturer);
        push("model", &self.model);
        push("slot-id", &self.slot_id.map(|s| s.to_string()));
        push("object", &self.object);
        push("type", &self.object_type);
        if let Some(id) = &self.id {
            path.push(format!(
                "id={}",
                id.iter().map(|b| format!("%{b:02X}")).collect::<String>()
            ));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        let mut query = Vec::new();
        match &self.pin {
            Some(PinSource::File(p)) => query.push(format!("pin-source=file:{}", p.display())),
            Some(PinSource::Value(_)) => query.push("pin-value=<redacted>".to_owned()),
            None => {}
        }
        if let Some(m) = &self.module_path {
            query.push(format!("module-path={}", m.display()));
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

/// Why a `pkcs11:` URI was refused. The PIN is never repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11UriError {
    /// The text does not start with `pkcs11:`.
    #[error(
        "not a PKCS#11 URI: it must start with `pkcs11:` (e.g. pkcs11:token=seller;object=webhook-2026)"
    )]
    NotPkcs11,
    /// An attribute is not `name=value`.
    #[error("PKCS#11 URI attribute {0:?} is not of the form name=value")]
    Malformed(String),
    /// A `%XX` escape is incomplete or not hexadecimal, or a value is not UTF-8.
    #[error("PKCS#11 URI attribute `{0}` has a bad percent-encoding; write bytes as %XX")]
    BadEncoding(String),
    /// An attribute this parser does not know (RFC 7512: a URI with an unknown path attribute
    /// matches nothing).
    #[error(
        "PKCS#11 URI attribute `{0}` is not supported; use token, serial, manufacturer, model, slot-id, object, id, type (path) and pin-source, pin-value, module-path (query)"
    )]
    Unknown(String),
    /// An attribute appears twice.
    #[error("PKCS#11 URI attribute `{0}` appears twice")]
    Duplicate(String),
    /// `slot-id` is not a number.
    #[error("PKCS#11 URI slot-id {0:?} is not a decimal number")]
    BadSlotId(String),
    /// The URI names no key.
    #[error("the PKCS#11 URI names no key: add object=LABEL (or id=%XX...)")]
    NoObject,
    /// The PIN file cannot be read.
    #[error("cannot read the PKCS#11 PIN file {}: {reason}", .path.display())]
    PinFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = Pkcs11UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("pkcs11:").ok_or(Pkcs11UriError::NotPkcs11)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        let attrs = path.split(';').map(|a| (a, true)).chain(
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|a| (a, false)),
        );
        for (attr, in_path) in attrs.filter(|(a, _)| !a.is_empty()) {
            let (name, raw) = attr
                .split_once('=')
                .ok_or_else(|| Pkcs11UriError::Malformed(attr.to_owned()))?;
            let bytes = decode(raw).ok_or_else(|| Pkcs11UriError::BadEncoding(name.to_owned()))?;
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| Pkcs11UriError::BadEncoding(name.to_owned()))
            };
            let dup = || Pkcs11UriError::Duplicate(name.to_owned());
            fn set<T>(
                slot: &mut Option<T>,
                v: T,
                dup: Pkcs11UriError,
            ) -> Result<(), Pkcs11UriError> {
                if slot.is_some() {
                    return Err(dup);
                }
                *slot = Some(v);
                Ok(())
            }
            match (name, in_path) {
                ("token", true) => set(&mut uri.token, text()?, dup())?,
                ("serial", true) => set(&mut uri.serial, text()?, dup())?,
                ("manufacturer", true) => set(&mut uri.manufacturer, text()?, dup())?,
                ("model", true) => set(&mut uri.model, text()?, dup())?,
                ("object", true) => set(&mut uri.object, text()?, dup())?,
                ("type", true) => set(&mut uri.object_type, text()?, dup())?,
                ("id", true) => set(&mut uri.id, bytes, dup())?,
                ("slot-id", true) => {
                    let t = text()?;
                    let n = t.parse().map_err(|_| Pkcs11UriError::BadSlotId(t))?;
                    set(&mut uri.slot_id, n, dup())?
                }
                ("pin-source", false) => {
                    let t = text()?;
                    let path = t.strip_prefix("file:").unwrap_or(&t);
                    // `file:///run/pin` and `file:/run/pin` both name /run/pin.
                    let path = path.strip_prefix("//").unwrap_or(path);
                    set(&mut uri.pin, PinSource::File(PathBuf::from(path)), dup())?
                }
                ("pin-value", false) => set(
                    &mut uri.pin,
                    PinSource::Value(Zeroizing::new(text()?)),
                    dup(),
                )?,
                ("module-path", false) => set(&mut uri.module_path, PathBuf::from(text()?), dup())?,
                (n, _) if n.starts_with("x-") => {}
                (n, _) => return Err(Pkcs11UriError::Unknown(n.to_owned())),
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(Pkcs11UriError::NoObject);
        }
        Ok(uri)
    }
}

/// Percent-decode; `None` on a bad escape.
fn decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Percent-encode what RFC 7512 does not allow unescaped in a path value.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,=&".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Pkcs11Uri, Pkcs11UriError> {
        s.parse()
    }

    #[test]
    fn path_and_query_attributes() {
        let uri = parse(
            "pkcs11:token=seller;object=webhook-2026;slot-id=3;id=%01%AB;type=private\
             ?pin-source=file:/run/pin&module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .expect("parses");
        assert_eq!(uri.token.as_deref(), Some("seller"));
        assert_eq!(uri.object.as_deref(), Some("webhook-2026"));
        assert_eq!(uri.slot_id, Some(3));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xab][..]));
        assert_eq!(uri.object_type.as_deref(), Some("private"));
        assert_eq!(uri.pin, Some(PinSource::File("/run/pin".into())));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
    }

    #[test]
    fn percent_escapes_decode_and_round_trip() {
        let uri = parse("pkcs11:token=My%20Token;object=a%3Bb").expect("parses");
        assert_eq!(uri.token.as_deref(), Some("My Token"));
        assert_eq!(uri.object.as_deref(), Some("a;b"));
        let again: Pkcs11Uri = uri.to_string().parse().expect("round trip");
        assert_eq!(again, uri);
        assert_eq!(
            parse("pkcs11:object=a%2"),
            Err(Pkcs11UriError::BadEncoding("object".into()))
        );
        assert_eq!(
            parse("pkcs11:object=%ZZ"),
            Err(Pkcs11UriError::BadEncoding("object".into()))
        );
    }

    #[test]
    fn the_pin_value_is_never_shown() {
        let uri = parse("pkcs11:object=k?pin-value=123456").expect("parses");
        assert!(matches!(&uri.pin, Some(PinSource::Value(v)) if v.as_str() == "123456"));
        for shown in [
            uri.to_string(),
            format!("{uri:?}"),
            format!("{:?}", uri.pin),
        ] {
            assert!(!shown.contains("123456"), "{shown}");
        }
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        assert_eq!(parse("token=seller"), Err(Pkcs11UriError::NotPkcs11));
        assert_eq!(parse("pkcs11:token=seller"), Err(Pkcs11UriError::NoObject));
        assert_eq!(
            parse("pkcs11:object=a;object=b"),
            Err(Pkcs11UriError::Duplicate("object".into()))
        );
        assert_eq!(
            parse("pkcs11:object=a;colour=red"),
            Err(Pkcs11UriError::Unknown("colour".into()))
        );
        assert_eq!(
            parse("pkcs11:object=a?token=x"),
            Err(Pkcs11UriError::Unknown("token".into())),
            "a path attribute in the query is not taken as one"
        );
        assert_eq!(
            parse("pkcs11:object"),
            Err(Pkcs11UriError::Malformed("object".into()))
        );
        assert_eq!(
            parse("pkcs11:object=a;slot-id=x"),
            Err(Pkcs11UriError::BadSlotId("x".into()))
        );
        assert!(
            parse("pkcs11:object=a;x-vendor=1").is_ok(),
            "x- attributes are vendor extensions"
        );
    }

    #[test]
    fn a_pin_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("adcp-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("pin");
        std::fs::write(&path, "4321\n").expect("write");
        let uri = parse(&format!(
            "pkcs11:object=k?pin-source=file://{}",
            path.display()
        ))
        .expect("parses");
        assert_eq!(
            uri.pin.expect("pin").read().expect("reads").as_str(),
            "4321"
        );
        let missing = PinSource::File(dir.join("absent"))
            .read()
            .expect_err("absent");
        assert!(
            missing
                .to_string()
                .contains("cannot read the PKCS#11 PIN file")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
