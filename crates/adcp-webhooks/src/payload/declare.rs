//! What every typed webhook kind shares, so that declaring one takes a struct and a field
//! list, not a copied file.
//!
//! # Declaring a kind
//! A kind is a struct of its fields, in schema order, plus three small pieces:
//!
//! 1. the struct derives `serde::Deserialize` with the wire field names (timestamps through
//!    `timestamp::deserialize`/`deserialize_option`, a constant field such as `event` or
//!    `notification_type` as a [`Const`] of a [`ConstField`] marker, `#[serde(flatten)] extra`
//!    when the schema allows additional properties, `#[serde(deny_unknown_fields)]` when it
//!    does not);
//! 2. [`setters!`] writes the `with_*` builder of each optional field (and `with_extra`);
//! 3. an `impl TypedPayload` says which [`WebhookKind`] it is, which fields its schema
//!    requires (receivers refuse a body without them), and writes its fields, in wire order,
//!    through a [`BodyWriter`]; [`typed_payload!`] turns that into the public
//!    [`WebhookPayload`](super::WebhookPayload) impl (kind, caller's key, encoding and the
//!    size cap).
//!
//! Then one line in the list at the end of `kinds.rs` (`Variant(Type): "description",
//! "name" | "alias";`) makes its [`WebhookKind`] variant, its names, and its variants of
//! [`AnyWebhook`](super::AnyWebhook) and [`ParsedWebhook`](super::ParsedWebhook). A receiver
//! recognises it unasked once [`ParsedWebhook::classify`](super::ParsedWebhook::classify) has
//! a rule for it; [`ParsedWebhook::parse_as`](super::ParsedWebhook::parse_as) works without.
//!
//! The writer records every field it is given, set or not, so an `extra` entry that repeats a
//! typed field is refused without a hand-kept list of names. The test module at the end of
//! this file declares a complete kind in this way.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{IdempotencyKey, MAX_BODY_BYTES, PayloadError, WebhookKind, check_extra, wire_time};

/// A typed webhook kind: its [`WebhookKind`] and how it writes its fields.
pub(crate) trait TypedPayload {
    /// The kind this type encodes.
    const KIND: WebhookKind;

    /// The fields the kind's schema lists under `required`, in schema order: a received body
    /// missing one (or holding `null`) is refused before it is deserialized.
    const REQUIRED: &'static [&'static str];

    /// Checks the rules serde cannot hold, then writes every field after `idempotency_key` in
    /// wire order (timestamps unset by the caller take `now`).
    fn write_fields(&self, w: &mut BodyWriter, now: OffsetDateTime) -> Result<(), PayloadError>;

    /// The key a receiver deduplicates a received body of this kind by: its
    /// `idempotency_key`. A kind without one (the destination challenge) answers `None`.
    fn received_key(&self) -> Option<&IdempotencyKey>
    where
        Self: super::WebhookPayload,
    {
        super::WebhookPayload::idempotency_key(self)
    }
}

/// Implements [`WebhookPayload`](super::WebhookPayload) for types that implement
/// [`TypedPayload`] and have a `pub idempotency_key: Option<IdempotencyKey>` field.
macro_rules! typed_payload {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::payload::WebhookPayload for $ty {
            fn kind(&self) -> $crate::payload::WebhookKind {
                <$ty as $crate::payload::declare::TypedPayload>::KIND
            }

            fn idempotency_key(&self) -> Option<&$crate::payload::IdempotencyKey> {
                self.idempotency_key.as_ref()
            }

            fn to_body(
                &self,
                key: &$crate::payload::IdempotencyKey,
                now: time::OffsetDateTime,
            ) -> Result<bytes::Bytes, $crate::payload::PayloadError> {
                let mut w = $crate::payload::declare::BodyWriter::new(
                    <$ty as $crate::payload::declare::TypedPayload>::KIND,
                    key,
                )?;
                $crate::payload::declare::TypedPayload::write_fields(self, &mut w, now)?;
                w.finish()
            }
        }
    )+};
}

/// The `with_*` builders of a payload type's optional fields:
///
/// ```text
/// setters! { MyWebhook {
///     /// Extra doc line (optional; "Sets `field`." is always written).
///     with_message(message: impl Into<String>);
///     with_ext(ext: Map<String, Value>);
///     extra with_extra;
/// } }
/// ```
///
/// Each `with_x(field: T)` stores `Some(value.into())` in `field` (an `Option`); `extra
/// with_extra` adds `with_extra(name, value)`, which inserts into the `extra` map.
macro_rules! setters {
    ($ty:ty { $($items:tt)* }) => {
        impl $ty {
            $crate::payload::declare::setters!(@item $($items)*);
        }
    };
    (@item) => {};
    (@item $(#[$doc:meta])* extra $method:ident; $($rest:tt)*) => {
        /// Adds a field the schema does not name, written after the named ones.
        $(#[$doc])*
        pub fn $method(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
            self.extra.insert(name.into(), value);
            self
        }
        $crate::payload::declare::setters!(@item $($rest)*);
    };
    (@item $(#[$doc:meta])* $method:ident($field:ident: $arg:ty); $($rest:tt)*) => {
        #[doc = concat!("Sets `", stringify!($field), "`.")]
        $(#[$doc])*
        #[allow(clippy::useless_conversion)]
        pub fn $method(mut self, $field: $arg) -> Self {
            self.$field = Some($field.into());
            self
        }
        $crate::payload::declare::setters!(@item $($rest)*);
    };
}

pub(crate) use {setters, typed_payload};

/// A constant string field (`event`, `notification_type`): what [`Const`] checks and writes.
pub(crate) trait ConstField {
    /// The wire name.
    const NAME: &'static str;
    /// The only value.
    const VALUE: &'static str;
}

/// Stands for a constant field in a payload struct: deserializing checks the value (a body
/// may also leave it out), encoding writes [`ConstField::VALUE`].
pub(crate) struct Const<C>(PhantomData<C>);

impl<C> Const<C> {
    pub(crate) const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<C> Default for Const<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Clone for Const<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Const<C> {}

impl<C> PartialEq for Const<C> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<C> Eq for Const<C> {}

impl<C: ConstField> fmt::Debug for Const<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(C::VALUE, f)
    }
}

impl<'de, C: ConstField> serde::Deserialize<'de> for Const<C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        if s == C::VALUE {
            Ok(Self::new())
        } else {
            Err(serde::de::Error::custom(format!(
                "{} must be \"{}\" (or left out), found {:?}",
                C::NAME,
                C::VALUE,
                s.chars().take(64).collect::<String>()
            )))
        }
    }
}

/// Writes a body: compact JSON, fields in the order given, `idempotency_key` first (when the
/// kind has one).
///
/// Writes the same bytes `serde_json` writes for a struct of those fields (a field left
/// `None` is left out), and records every field name it is given, so that [`extra`](Self::extra)
/// can refuse an entry that repeats one.
pub(crate) struct BodyWriter {
    kind: WebhookKind,
    buf: Vec<u8>,
    named: Vec<&'static str>,
}

impl BodyWriter {
    /// A body of `kind` that starts with `key`.
    pub(crate) fn new(kind: WebhookKind, key: &IdempotencyKey) -> Result<Self, PayloadError> {
        let mut w = Self::without_key(kind);
        w.field("idempotency_key", key)?;
        Ok(w)
    }

    /// A body of `kind` without an `idempotency_key` (the destination challenge's schema
    /// has none).
    pub(crate) fn without_key(kind: WebhookKind) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.push(b'{');
        Self {
            kind,
            buf,
            named: Vec::with_capacity(16),
        }
    }

    fn name(&mut self, name: &str) -> Result<(), PayloadError> {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        serde_json::to_writer(&mut self.buf, name).map_err(PayloadError::Serialize)?;
        self.buf.push(b':');
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PayloadError> {
        serde_json::to_writer(&mut self.buf, value).map_err(PayloadError::Serialize)
    }

    /// Writes a field.
    pub(crate) fn field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<&mut Self, PayloadError> {
        self.named.push(name);
        self.name(name)?;
        self.value(value)?;
        Ok(self)
    }

    /// Writes a field when it is set.
    pub(crate) fn opt<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: Option<&T>,
    ) -> Result<&mut Self, PayloadError> {
        match value {
            Some(value) => self.field(name, value),
            None => {
                self.named.push(name);
                Ok(self)
            }
        }
    }

    /// Writes a constant field.
    pub(crate) fn constant<C: ConstField>(
        &mut self,
        _: Const<C>,
    ) -> Result<&mut Self, PayloadError> {
        self.field(C::NAME, C::VALUE)
    }

    /// Writes a timestamp as `YYYY-MM-DDTHH:MM:SS.mmmZ`; one out of the schema's range is a
    /// [`PayloadError::InvalidField`] naming the field.
    pub(crate) fn time(
        &mut self,
        name: &'static str,
        t: OffsetDateTime,
    ) -> Result<&mut Self, PayloadError> {
        let text = wire_time(self.kind, name, t)?;
        self.field(name, &text)
    }

    /// Writes a timestamp when it is set.
    pub(crate) fn opt_time(
        &mut self,
        name: &'static str,
        t: Option<OffsetDateTime>,
    ) -> Result<&mut Self, PayloadError> {
        match t {
            Some(t) => self.time(name, t),
            None => self.opt::<str>(name, None),
        }
    }

    /// [`time`](Self::time) by reference, for declarations that write every field the same way.
    pub(crate) fn tm(
        &mut self,
        name: &'static str,
        t: &OffsetDateTime,
    ) -> Result<&mut Self, PayloadError> {
        self.time(name, *t)
    }

    /// A timestamp the schema requires but allows to be `null`: written as `null` when unset.
    pub(crate) fn nullable_tm(
        &mut self,
        name: &'static str,
        t: &Option<OffsetDateTime>,
    ) -> Result<&mut Self, PayloadError> {
        match t {
            Some(t) => self.time(name, *t),
            None => self.field(name, &Value::Null),
        }
    }

    /// Writes the fields the schema does not name, after checking that none repeats a field
    /// written (or left unset) before.
    pub(crate) fn extra(&mut self, extra: &Map<String, Value>) -> Result<&mut Self, PayloadError> {
        check_extra(self.kind, extra, &self.named)?;
        for (name, value) in extra {
            self.name(name)?;
            self.value(value)?;
        }
        Ok(self)
    }

    /// The body, or [`PayloadError::BodyTooLarge`] over [`MAX_BODY_BYTES`].
    pub(crate) fn finish(mut self) -> Result<Bytes, PayloadError> {
        self.buf.push(b'}');
        if self.buf.len() > MAX_BODY_BYTES {
            return Err(PayloadError::BodyTooLarge {
                size: self.buf.len(),
                max: MAX_BODY_BYTES,
            });
        }
        Ok(Bytes::from(self.buf))
    }
}

#[cfg(test)]
mod example {
    //! A whole kind declared with the pieces above, shaped like AdCP 3.2's
    //! `creative/creative-purged-webhook.json` (closed schema, a constant
    //! `notification_type`, required and optional timestamps).

    use super::{BodyWriter, Const, ConstField, TypedPayload};
    use crate::payload::{
        IdempotencyKey, PayloadError, WebhookKind, WebhookPayload, encode, timestamp,
    };
    use serde_json::{Map, Value, json};
    use time::OffsetDateTime;
    use time::macros::datetime;

    struct PurgedType;
    impl ConstField for PurgedType {
        const NAME: &'static str = "notification_type";
        const VALUE: &'static str = "creative.purged";
    }

    /// The struct: wire names and serde attributes for receivers.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CreativePurged {
        #[serde(default)]
        idempotency_key: Option<IdempotencyKey>,
        #[serde(default)]
        notification_type: Const<PurgedType>,
        creative_id: String,
        #[serde(deserialize_with = "timestamp::deserialize")]
        purged_at: OffsetDateTime,
        #[serde(default)]
        reason_detail: Option<String>,
        #[serde(default)]
        ext: Option<Map<String, Value>>,
    }

    impl CreativePurged {
        fn new(creative_id: impl Into<String>, purged_at: OffsetDateTime) -> Self {
            Self {
                idempotency_key: None,
                notification_type: Const::new(),
                creative_id: creative_id.into(),
                purged_at,
                reason_detail: None,
                ext: None,
            }
        }
    }

    // The builders.
    super::setters! { CreativePurged {
        with_idempotency_key(idempotency_key: IdempotencyKey);
        with_reason_detail(reason_detail: impl Into<String>);
        with_ext(ext: Map<String, Value>);
    } }

    // The fields, in wire order.
    impl TypedPayload for CreativePurged {
        const KIND: WebhookKind = WebhookKind::Raw;
        const REQUIRED: &'static [&'static str] = &[
            "idempotency_key",
            "notification_type",
            "creative_id",
            "purged_at",
        ];

        fn write_fields(
            &self,
            w: &mut BodyWriter,
            _now: OffsetDateTime,
        ) -> Result<(), PayloadError> {
            w.constant(self.notification_type)?
                .field("creative_id", &self.creative_id)?
                .time("purged_at", self.purged_at)?
                .opt("reason_detail", self.reason_detail.as_deref())?
                .opt("ext", self.ext.as_ref())?;
            Ok(())
        }
    }

    super::typed_payload!(CreativePurged);

    #[test]
    fn a_declared_kind_encodes_in_field_order_and_parses_back() {
        let key = IdempotencyKey::new("whk_example_purge_0001").unwrap();
        let webhook = CreativePurged::new("cr_1", datetime!(2026-04-01 12:00 UTC))
            .with_reason_detail("policy")
            .with_ext(Map::from_iter([("v".to_owned(), json!(1))]))
            .with_idempotency_key(key.clone());
        assert_eq!(webhook.kind(), WebhookKind::Raw);
        let body = encode(&webhook, datetime!(2026-04-01 12:00:05 UTC)).unwrap();
        assert_eq!(body.idempotency_key, key);
        assert_eq!(
            std::str::from_utf8(&body.bytes).unwrap(),
            r#"{"idempotency_key":"whk_example_purge_0001","notification_type":"creative.purged","creative_id":"cr_1","purged_at":"2026-04-01T12:00:00.000Z","reason_detail":"policy","ext":{"v":1}}"#
        );
        let back: CreativePurged = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(back, webhook);

        let wrong = json!({
            "notification_type": "creative.status_changed",
            "creative_id": "cr_1",
            "purged_at": "2026-04-01T12:00:00Z",
        });
        let err = serde_json::from_value::<CreativePurged>(wrong).unwrap_err();
        assert!(
            err.to_string()
                .contains("notification_type must be \"creative.purged\"")
        );
    }

    #[test]
    fn the_writer_refuses_extra_fields_that_repeat_typed_ones_set_or_not() {
        let key = IdempotencyKey::new("whk_example_purge_0002").unwrap();
        let mut extra = Map::new();
        extra.insert("note".into(), json!(1));
        let mut w = BodyWriter::new(WebhookKind::Raw, &key).unwrap();
        w.field("a", "x").unwrap().opt::<str>("b", None).unwrap();
        w.extra(&extra).unwrap();
        assert_eq!(
            &w.finish().unwrap()[..],
            br#"{"idempotency_key":"whk_example_purge_0002","a":"x","note":1}"#
        );

        extra.insert("b".into(), json!(2));
        let mut w = BodyWriter::new(WebhookKind::Raw, &key).unwrap();
        w.opt::<str>("b", None).unwrap();
        let err = w.extra(&extra).err().unwrap();
        assert!(matches!(err, PayloadError::ReservedExtraField { ref field, .. } if field == "b"));
    }
}
