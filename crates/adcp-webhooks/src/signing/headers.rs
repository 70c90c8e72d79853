//! Read-only access to request headers, whatever map type the caller holds.

use std::collections::{BTreeMap, HashMap};

/// Something that can answer "what are the values of header `name`?" (case-insensitively).
///
/// Implemented for slices and vectors of `(name, value)` pairs, for `HashMap` / `BTreeMap`
/// of strings, and for [`http::HeaderMap`] (values that are not
/// valid UTF-8 are skipped: they cannot be part of an AdCP signature base).
pub trait HeaderSource {
    /// Every value of the header `name` (ASCII case-insensitive), in order.
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str>;

    /// The value of `name` as the signature base sees it: each value trimmed, several values
    /// joined with `", "` (RFC 9421 §2.1). `None` when the header is absent.
    fn combined(&self, name: &str) -> Option<String> {
        let vals = self.values(name);
        if vals.is_empty() {
            return None;
        }
        Some(
            vals.iter()
                .map(|v| v.trim_matches([' ', '\t']))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for [(K, V)] {
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for Vec<(K, V)> {
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.as_slice().values(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, S> HeaderSource for HashMap<K, V, S> {
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for BTreeMap<K, V> {
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
            .collect()
    }
}

impl HeaderSource for http::HeaderMap {
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

impl<T: HeaderSource + ?Sized> HeaderSource for &T {
    fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        (**self).values(name)
    }
}
