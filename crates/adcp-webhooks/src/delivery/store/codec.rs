//! Encodings shared by the SQL stores.

use super::StoreError;

/// A [`StoreError::Corrupt`] saying what could not be read.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        detail: what.to_string(),
    }
}

/// Extra headers as stored: a JSON array of `[name, value]` pairs.
pub(crate) fn headers_to_json(headers: &[(String, String)]) -> String {
    serde_json::Value::Array(
        headers
            .iter()
            .map(|(k, v)| serde_json::Value::Array(vec![k.clone().into(), v.clone().into()]))
            .collect(),
    )
    .to_string()
}

/// The inverse of [`headers_to_json`].
pub(crate) fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("extra headers: {e}")))
}

/// A stored count or number that must fit a `u32`.
pub(crate) fn to_u32(column: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(format!("column {column} holds {v}")))
}

/// A stored HTTP status.
pub(crate) fn to_status(column: &str, v: Option<i64>) -> Result<Option<u16>, StoreError> {
    v.map(|v| u16::try_from(v).map_err(|_| corrupt(format!("column {column} holds {v}"))))
        .transpose()
}

/// A stored error class name.
pub(crate) fn to_class(
    name: Option<String>,
) -> Result<Option<crate::delivery::policy::ErrorClass>, StoreError> {
    name.map(|name| {
        crate::delivery::policy::ErrorClass::from_name(&name)
            .ok_or_else(|| corrupt(format!("unknown error class {name:?}")))
    })
    .transpose()
}

/// The recorded prefix of a response body.
pub(crate) fn recorded_response(body: Option<&bytes::Bytes>) -> Option<Vec<u8>> {
    body.map(|b| {
        b.get(..super::MAX_RECORDED_RESPONSE_BYTES)
            .unwrap_or(b)
            .to_vec()
    })
}
