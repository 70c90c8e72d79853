//! RFC 3339 timestamps as AdCP webhook bodies carry them.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`: UTC, millisecond precision, `Z` suffix.
///
/// The same shape as JavaScript's `Date.prototype.toISOString` (the JS reference SDK's
/// timestamps) and as the AdCP receiver-envelope vectors. Milliseconds keep the value
/// parseable by every common RFC 3339 parser (some reject more than six fractional digits).
pub(crate) fn format_utc_millis(t: OffsetDateTime) -> Result<String, String> {
    // `checked_to_offset`: converting e.g. 9999-12-31T23:00-05:00 to UTC leaves the range
    // `time` can represent, and the panicking `to_offset` must never see user input.
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| "is out of range once converted to UTC".to_owned())?;
    let year = utc.year();
    if !(0..=9999).contains(&year) {
        return Err(format!(
            "has year {year}; RFC 3339 needs a year from 0000 to 9999"
        ));
    }
    Ok(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.millisecond()
    ))
}

/// Parses an RFC 3339 date-time (any offset).
pub(crate) fn parse(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("is not an RFC 3339 date-time such as 2026-05-26T09:00:44.582Z ({e})"))
}

/// `#[serde(deserialize_with)]` for a required timestamp field.
pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<OffsetDateTime, D::Error> {
    let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    parse(&s).map_err(|e| serde::de::Error::custom(format!("timestamp {e}")))
}

/// `#[serde(deserialize_with)]` for an optional timestamp field (absent or `null` is `None`).
pub(crate) fn deserialize_option<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    let s = <Option<std::borrow::Cow<'de, str>> as serde::Deserialize>::deserialize(deserializer)?;
    s.map(|s| parse(&s).map_err(|e| serde::de::Error::custom(format!("timestamp {e}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(
            format_utc_millis(datetime!(2026-05-26 11:00:44.582_999 +02:00)).as_deref(),
            Ok("2026-05-26T09:00:44.582Z")
        );
        assert_eq!(
            format_utc_millis(datetime!(2025-01-22 10:15:00 UTC)).as_deref(),
            Ok("2025-01-22T10:15:00.000Z")
        );
    }

    #[test]
    fn out_of_range_years_are_errors_not_panics() {
        assert!(format_utc_millis(datetime!(9999-12-31 23:00 -05:00)).is_err());
        assert!(format_utc_millis(datetime!(-0001-06-01 00:00 UTC)).is_err());
    }
}
