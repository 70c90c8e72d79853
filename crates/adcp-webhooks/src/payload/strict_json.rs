//! JSON parsing that refuses duplicate object keys.
//!
//! `{"status":"completed","status":"failed"}` is valid JSON to most parsers, which keep the
//! last value (serde_json) or the first (some others). When the party that checks a body and
//! the party that acts on it read different values, a signature over the bytes no longer
//! pins down what is acted on: the classic parser-differential bypass. Every received body is
//! therefore parsed here, and a duplicate key at any depth is an error naming the key.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

use super::PayloadError;

/// Parse `bytes` as one JSON value, refusing a duplicate key in any object.
///
/// # Errors
/// [`PayloadError::DuplicateKey`] naming the first repeated key (and its JSON path), or
/// [`PayloadError::InvalidJson`] for anything that is not JSON.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, PayloadError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some((path, key))) => Err(PayloadError::DuplicateKey { path, key }),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(PayloadError::InvalidJson(e)),
    }
}

/// One value at `path`; a duplicate found below is written to `duplicate`.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let path = if self.path.is_empty() {
                    "$".to_owned()
                } else {
                    format!("${}", self.path)
                };
                *self.duplicate.borrow_mut() = Some((path, key.clone()));
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(Strict {
                path: format!("{}.{key}", self.path),
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for (body, path, key) in [
            (r#"{"status":"completed","status":"failed"}"#, "$", "status"),
            (r#"{"a":{"b":1,"b":2}}"#, "$.a", "b"),
            (r#"{"a":[{"x":1},{"y":1,"y":2}]}"#, "$.a[1]", "y"),
            (r#"{"k":1,"K":2,"k":3}"#, "$", "k"),
        ] {
            match parse_strict(body.as_bytes()) {
                Err(PayloadError::DuplicateKey { path: p, key: k }) => {
                    assert_eq!((p.as_str(), k.as_str()), (path, key), "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn everything_else_parses_as_serde_json_does() {
        for body in [
            r#"{"a":1,"b":[1,2,{"c":null}],"d":"\u00e9","e":-1.5e3,"f":18446744073709551615}"#,
            "[]",
            "\"text\"",
            "  {\"K\":1,\"k\":2}  ",
        ] {
            let ours = parse_strict(body.as_bytes()).expect(body);
            let theirs: Value = serde_json::from_str(body).expect(body);
            assert_eq!(ours, theirs, "{body}");
        }
        for bad in ["", "{", "{\"a\":1} x", "{\"a\" 1}"] {
            assert!(
                matches!(
                    parse_strict(bad.as_bytes()),
                    Err(PayloadError::InvalidJson(_))
                ),
                "{bad:?}"
            );
        }
        // serde_json's nesting limit still applies.
        let deep = "[".repeat(10_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }
}
