//! What the AdCP 3.2 notification webhooks share, and [`notification!`], which declares one.
//!
//! The account-, agent- and caller-anchored notifications (`account.status_changed`,
//! `creative.purged`, `reporting.status_changed`, ...) all start with the same five fields,
//! in their schemas' order: `idempotency_key`, `notification_id`, `notification_type` (a
//! constant), `fired_at` and `subscriber_id`; then come the kind's own fields and `ext`. All
//! of their schemas forbid additional properties, so these types have no `extra` map and
//! refuse unknown fields when deserializing.
//!
//! Defaults, as the official Python SDK 9.2.0 fills them (`WebhookSender._prepare_notification`):
//! `notification_type` is the kind's constant, `fired_at` is the encoder's `now`, and
//! `idempotency_key` a fresh `whk_<uuid>`. `notification_id` has no default: the schemas give
//! it a meaning (stable across re-emissions of one logical event) only the caller knows.
//!
//! ```text
//! notification! {
//!     /// Docs of the type.
//!     MyKind: MyKind, MyKindType = "my.kind";  // type, WebhookKind variant, marker, value
//!     required {
//!         /// Docs.
//!         required_a: String => field,        // BodyWriter method: field / tm / nullable_tm
//!         #[serde(deserialize_with = "timestamp::deserialize")]
//!         required_b: OffsetDateTime => tm,
//!     }
//!     present { }                             // required, but may be null (not in REQUIRED)
//!     optional {
//!         /// Docs.
//!         opt_c: String => opt, with_opt_c(impl Into<String>);
//!     }
//! }
//! impl Rules for MyKind {}                    // or a `check` for the cross-field rules
//! ```

use serde_json::{Map, Value};

use super::{PayloadError, WebhookKind};

/// Rules of a notification kind that serde and the types cannot hold (cross-field rules,
/// lengths, patterns). Checked every time the body is built.
pub(crate) trait Rules {
    /// `Ok` when the payload may be encoded.
    fn check(&self) -> Result<(), PayloadError> {
        Ok(())
    }
}

/// A [`PayloadError::InvalidField`].
pub(crate) fn invalid(
    kind: WebhookKind,
    field: impl Into<String>,
    reason: impl Into<String>,
) -> PayloadError {
    PayloadError::InvalidField {
        kind,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks AdCP's identifier pattern `^[A-Za-z0-9_.:-]{1,max}$`.
pub(crate) fn check_token(
    kind: WebhookKind,
    field: &str,
    value: &str,
    max: usize,
) -> Result<(), PayloadError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if value.is_empty() || value.len() > max || !value.chars().all(ok_char) {
        return Err(invalid(
            kind,
            field,
            format!("must be 1-{max} characters from [A-Za-z0-9_.:-]"),
        ));
    }
    Ok(())
}

/// Checks a string's length in characters (JSON Schema's `minLength`/`maxLength`).
pub(crate) fn check_len(
    kind: WebhookKind,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), PayloadError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            kind,
            field,
            format!("has {n} characters; the schema allows {min}-{max}"),
        ));
    }
    Ok(())
}

/// Checks an array's item count and, with `unique`, that no item repeats.
pub(crate) fn check_items<T: PartialEq>(
    kind: WebhookKind,
    field: &str,
    items: &[T],
    min: usize,
    max: usize,
    unique: bool,
) -> Result<(), PayloadError> {
    if items.len() < min || items.len() > max {
        return Err(invalid(
            kind,
            field,
            format!("has {} items; the schema allows {min}-{max}", items.len()),
        ));
    }
    if unique
        && items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].contains(a))
    {
        return Err(invalid(
            kind,
            field,
            "repeats an item; items must be unique",
        ));
    }
    Ok(())
}

/// Checks an `ext` object's member count, for schemas that bound it.
pub(crate) fn check_ext_size(
    kind: WebhookKind,
    ext: Option<&Map<String, Value>>,
    max: usize,
) -> Result<(), PayloadError> {
    match ext {
        Some(ext) if ext.len() > max => Err(invalid(
            kind,
            "ext",
            format!("has {} members; the schema allows at most {max}", ext.len()),
        )),
        _ => Ok(()),
    }
}

/// Declares a notification kind; see the module docs.
macro_rules! notification {
    (
        $(#[$doc:meta])*
        $name:ident: $kind:ident, $marker:ident = $value:literal;
        required {
            $( $(#[$rattr:meta])* $rfield:ident: $rty:ty => $rhow:ident, )*
        }
        present {
            $( $(#[$pattr:meta])* $pfield:ident: $pty:ty => $phow:ident, )*
        }
        optional {
            $( $(#[$oattr:meta])* $ofield:ident: $oty:ty => $ohow:ident, $setter:ident($sarg:ty); )*
        }
    ) => {
        #[doc = concat!("The `notification_type` of [`", stringify!($name), "`].")]
        struct $marker;

        impl $crate::payload::declare::ConstField for $marker {
            const NAME: &'static str = "notification_type";
            const VALUE: &'static str = $value;
        }

        $(#[$doc])*
        ///
        /// `notification_type` is written by the encoder, `fired_at` defaults to the encoder's
        /// `now` and `idempotency_key` to a fresh `whk_<uuid>` (the Python SDK's defaults).
        #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[non_exhaustive]
        pub struct $name {
            /// Delivery key, reused on every retry of one fire; generated at encode time
            /// when `None`.
            #[serde(default)]
            pub idempotency_key: Option<$crate::payload::IdempotencyKey>,
            /// Stable identity of the logical event across re-emissions (1-255 characters
            /// from `[A-Za-z0-9_.:-]`).
            pub notification_id: String,
            #[serde(default)]
            notification_type: $crate::payload::declare::Const<$marker>,
            /// When this fire was initiated; the encoder's `now` when `None`.
            #[serde(default, deserialize_with = "crate::payload::timestamp::deserialize_option")]
            pub fired_at: Option<time::OffsetDateTime>,
            /// The receiving `notification_configs[]` entry's `subscriber_id`, echoed
            /// verbatim (1-64 characters from `[A-Za-z0-9_.:-]`).
            pub subscriber_id: String,
            $( $(#[$rattr])* pub $rfield: $rty, )*
            $( $(#[$pattr])* pub $pfield: $pty, )*
            $( $(#[$oattr])* #[serde(default)] pub $ofield: Option<$oty>, )*
            /// Vendor-namespaced extensions (`core/ext.json`).
            #[serde(default)]
            pub ext: Option<serde_json::Map<String, serde_json::Value>>,
        }

        impl $name {
            #[doc = concat!(
                "A `", $value, "` notification with its required fields; `notification_id` ",
                "and `subscriber_id` as the type docs describe, then the kind's required ",
                "fields in schema order."
            )]
            #[allow(clippy::too_many_arguments)]
            pub fn new(
                notification_id: impl Into<String>,
                subscriber_id: impl Into<String>,
                $($rfield: impl Into<$rty>,)*
                $($pfield: impl Into<$pty>,)*
            ) -> Self {
                Self {
                    idempotency_key: None,
                    notification_id: notification_id.into(),
                    notification_type: $crate::payload::declare::Const::new(),
                    fired_at: None,
                    subscriber_id: subscriber_id.into(),
                    $( $rfield: $rfield.into(), )*
                    $( $pfield: $pfield.into(), )*
                    $( $ofield: None, )*
                    ext: None,
                }
            }
        }

        $crate::payload::declare::setters! { $name {
            /// Reuse it for every retry of this fire; [`encode`](crate::payload::encode)
            /// generates one when it is unset.
            with_idempotency_key(idempotency_key: $crate::payload::IdempotencyKey);
            /// Without it, the encoder's `now` is written.
            with_fired_at(fired_at: time::OffsetDateTime);
            $( $setter($ofield: $sarg); )*
            with_ext(ext: serde_json::Map<String, serde_json::Value>);
        } }

        impl $crate::payload::declare::TypedPayload for $name {
            const KIND: $crate::payload::WebhookKind = $crate::payload::WebhookKind::$kind;
            const REQUIRED: &'static [&'static str] = &[
                "idempotency_key",
                "notification_id",
                "notification_type",
                "fired_at",
                "subscriber_id",
                $(stringify!($rfield),)*
            ];

            fn write_fields(
                &self,
                w: &mut $crate::payload::declare::BodyWriter,
                now: time::OffsetDateTime,
            ) -> Result<(), $crate::payload::PayloadError> {
                let kind = <Self as $crate::payload::declare::TypedPayload>::KIND;
                $crate::payload::notify::check_token(
                    kind, "notification_id", &self.notification_id, 255,
                )?;
                $crate::payload::notify::check_token(
                    kind, "subscriber_id", &self.subscriber_id, 64,
                )?;
                $crate::payload::notify::Rules::check(self)?;
                w.field("notification_id", &self.notification_id)?
                    .constant(self.notification_type)?
                    .tm("fired_at", &self.fired_at.unwrap_or(now))?
                    .field("subscriber_id", &self.subscriber_id)?;
                $( w.$rhow(stringify!($rfield), &self.$rfield)?; )*
                $( w.$phow(stringify!($pfield), &self.$pfield)?; )*
                $( w.$ohow(stringify!($ofield), self.$ofield.as_ref())?; )*
                w.opt("ext", self.ext.as_ref())?;
                Ok(())
            }
        }

        $crate::payload::declare::typed_payload!($name);
    };
}

pub(crate) use notification;
