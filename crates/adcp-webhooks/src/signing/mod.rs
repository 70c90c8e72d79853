//! The AdCP `adcp/webhook-signing/v1` profile of RFC 9421, as pure functions.

pub mod canonical;
mod headers;
pub mod structured;

pub use canonical::{
    CanonicalUrl, Scheme, UrlError, UrlErrorReason, canonicalize_authority, canonicalize_url,
};
pub use headers::HeaderSource;
pub use structured::{
    ParamValue, SignatureInput, StructuredError, content_digest, parse_content_digest,
    parse_signature, parse_signature_input,
};
