//! The AdCP webhook verifier checklist, steps 1 to 12 (with 9a), in the order the conformance
//! vectors grade them.
//!
//! The order is part of the security design, not a detail: everything that costs no state and
//! no cryptography runs first; revocation and replay-cache capacity (9, 9a) run before the
//! signature check so a flood is rejected cheaply; the nonce is recorded only at step 12, after
//! the signature and the digest have verified, so a forged request cannot burn a genuine
//! sender's nonce.

use super::error::{ErrorCode, Step, VerifyError};
use super::jwks::KeySource;
use super::replay::{ReplayClaim, ReplayStore};
use super::revocation::{RevocationSource, RevocationStatus};
use super::{ReceivedRequest, VerifiedWebhook};
use crate::keys::Algorithm;
use crate::signing::{
    self, BaseError, COVERED_COMPONENTS, HeaderSource, MAX_WINDOW_SECS, SignatureInput,
    WEBHOOK_TAG, canonicalize_url, parse_signature, parse_signature_input,
};

/// The longest `keyid` or `nonce` accepted, in bytes. Both end up as keys of the replay store,
/// so an unbounded value would let one request pin unbounded memory.
pub const MAX_PARAM_LEN: usize = 256;

/// The most covered components a signature may list (the profile needs five).
pub const MAX_COMPONENTS: usize = 64;

/// The parts of the verifier configuration the checklist reads.
pub(super) struct Checklist<'a> {
    pub keys: &'a dyn KeySource,
    pub replay: &'a dyn ReplayStore,
    pub revocation: Option<&'a dyn RevocationSource>,
    pub label: &'a str,
    pub max_skew: i64,
    pub allowed: &'a [Algorithm],
}

fn fail(code: ErrorCode, step: Step, message: impl Into<String>) -> VerifyError {
    VerifyError::new(code, step, message)
}

impl Checklist<'_> {
    pub(super) fn run<H: HeaderSource + ?Sized>(
        &self,
        req: &ReceivedRequest<'_, H>,
        now: i64,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let headers = req.headers;

        // Step 1: both headers present, parseable, carrying our label.
        let si = headers.combined("signature-input");
        let sg = headers.combined("signature");
        let (si, sg) = match (si, sg) {
            (Some(si), Some(sg)) => (si, sg),
            (None, None) => {
                return Err(fail(
                    ErrorCode::HeaderMalformed,
                    Step::Headers,
                    "the request carries no Signature / Signature-Input headers: it is not signed",
                ));
            }
            (None, Some(_)) => {
                return Err(fail(
                    ErrorCode::HeaderMalformed,
                    Step::Headers,
                    "Signature is present without Signature-Input; both headers must be sent together",
                ));
            }
            (Some(_), None) => {
                return Err(fail(
                    ErrorCode::HeaderMalformed,
                    Step::Headers,
                    "Signature-Input is present without Signature; both headers must be sent together",
                ));
            }
        };
        let malformed = |e: signing::StructuredError| {
            fail(ErrorCode::HeaderMalformed, Step::Headers, e.to_string())
        };
        let input = parse_signature_input(&si)
            .map_err(malformed)?
            .into_iter()
            .find(|i| i.label == self.label)
            .ok_or_else(|| {
                fail(
                    ErrorCode::HeaderMalformed,
                    Step::Headers,
                    format!("Signature-Input has no {:?} label", self.label),
                )
            })?;
        let signature = parse_signature(&sg, self.label)
            .map_err(malformed)?
            .ok_or_else(|| {
                fail(
                    ErrorCode::HeaderMalformed,
                    Step::Headers,
                    format!("Signature has no {:?} label", self.label),
                )
            })?;

        // Step 2: required parameters.
        let params = Params::read(&input)?;

        // Step 3: tag.
        if params.tag != WEBHOOK_TAG {
            return Err(fail(
                ErrorCode::TagInvalid,
                Step::Tag,
                format!(
                    "tag is {:?}; webhook signatures must carry {WEBHOOK_TAG:?}",
                    params.tag
                ),
            ));
        }

        // Step 4: algorithm allow-list. The name must be the exact RFC 9421 spelling.
        let alg = Algorithm::from_name(params.alg)
            .filter(|a| a.rfc9421_name() == params.alg && self.allowed.contains(a))
            .ok_or_else(|| {
                let allowed: Vec<&str> = self.allowed.iter().map(|a| a.rfc9421_name()).collect();
                fail(
                    ErrorCode::AlgNotAllowed,
                    Step::Alg,
                    format!("alg {:?} is not one of {allowed:?}", params.alg),
                )
            })?;

        // Step 5: window.
        self.check_window(params.created, params.expires, now)?;

        // Step 6: covered components, then the signature base (pure, so it costs no state).
        let missing: Vec<&str> = COVERED_COMPONENTS
            .iter()
            .copied()
            .filter(|c| !input.components.iter().any(|x| x == c))
            .collect();
        if !missing.is_empty() {
            return Err(fail(
                ErrorCode::ComponentsIncomplete,
                Step::Components,
                format!(
                    "the signature does not cover {missing:?}; webhook signatures cover all of {COVERED_COMPONENTS:?}"
                ),
            ));
        }
        // Bounded and linear: this runs before any key lookup, so an unsigned request must not
        // be able to buy quadratic work with a long component list.
        if input.components.len() > MAX_COMPONENTS {
            return Err(fail(
                ErrorCode::HeaderMalformed,
                Step::Components,
                format!(
                    "Signature-Input covers {} components; at most {MAX_COMPONENTS} are accepted",
                    input.components.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(input.components.len());
        for c in &input.components {
            if !seen.insert(c.as_str()) {
                return Err(fail(
                    ErrorCode::HeaderMalformed,
                    Step::Components,
                    format!("component {c:?} is listed twice in Signature-Input"),
                ));
            }
        }
        let url = canonicalize_url(req.target_uri).map_err(|e| {
            fail(
                ErrorCode::TargetUriMalformed,
                Step::Components,
                format!("cannot rebuild @target-uri: {e}"),
            )
        })?;
        let base =
            signing::signature_base(req.method, &url, headers, &input).map_err(|e| match e {
                BaseError::Url(u) => fail(
                    ErrorCode::TargetUriMalformed,
                    Step::Components,
                    u.to_string(),
                ),
                other => fail(
                    ErrorCode::HeaderMalformed,
                    Step::Components,
                    other.to_string(),
                ),
            })?;

        // Step 7: key lookup.
        let keyid = params.keyid;
        let with_kid = |e: VerifyError| e.with_keyid(keyid);
        let published = self.keys.key(keyid).ok_or_else(|| {
            with_kid(fail(
                ErrorCode::KeyUnknown,
                Step::KeyLookup,
                format!("no key with keyid {keyid:?} in the sender's key set"),
            ))
        })?;

        // Step 8: key purpose.
        let key = published
            .check_purpose(alg)
            .map_err(|m| with_kid(fail(ErrorCode::KeyPurposeInvalid, Step::KeyPurpose, m)))?;

        // Step 9: revocation. A stale list decides nothing, so it is checked first.
        if let Some(rev) = self.revocation {
            match rev.status(keyid, now) {
                RevocationStatus::Good => {}
                RevocationStatus::Stale => {
                    return Err(with_kid(fail(
                        ErrorCode::RevocationStale,
                        Step::Revocation,
                        "the revocation list is past its refresh deadline; refresh it before accepting webhooks",
                    )));
                }
                RevocationStatus::Revoked => {
                    return Err(with_kid(fail(
                        ErrorCode::KeyRevoked,
                        Step::Revocation,
                        format!("key {keyid:?} is revoked"),
                    )));
                }
            }
        }

        // Step 9a: replay-cache capacity, before any cryptography.
        if self.replay.at_capacity(keyid, now) {
            return Err(with_kid(fail(
                ErrorCode::RateAbuse,
                Step::RateAbuse,
                format!(
                    "the replay cache for key {keyid:?} is full; the sender exceeds the allowed rate"
                ),
            )));
        }

        // Step 10: the signature.
        if !key.verify(base.as_bytes(), &signature) {
            return Err(with_kid(fail(
                ErrorCode::SignatureInvalid,
                Step::Signature,
                format!(
                    "the signature does not verify under key {keyid:?} over the rebuilt signature base"
                ),
            )));
        }

        // Step 11: the body against Content-Digest (covered, so present: step 6 built the base).
        let digest = headers.combined("content-digest").unwrap_or_default();
        match signing::digest_matches(&digest, req.body) {
            Ok(true) => {}
            Ok(false) => {
                return Err(with_kid(fail(
                    ErrorCode::DigestMismatch,
                    Step::Digest,
                    "Content-Digest does not match the body (was the body re-serialized after signing?)",
                )));
            }
            Err(e) => {
                return Err(with_kid(fail(
                    ErrorCode::DigestMismatch,
                    Step::Digest,
                    format!("Content-Digest cannot be checked: {e}"),
                )));
            }
        }

        // Step 12: replay. Remember the nonce until the window (plus skew) has passed.
        let forget_after = params.expires.saturating_add(self.max_skew);
        match self.replay.claim(keyid, params.nonce, forget_after, now) {
            ReplayClaim::Claimed => {}
            ReplayClaim::Replayed => {
                return Err(with_kid(fail(
                    ErrorCode::Replayed,
                    Step::Replay,
                    format!(
                        "nonce {:?} was already accepted for key {keyid:?}",
                        params.nonce
                    ),
                )));
            }
            ReplayClaim::Capacity => {
                return Err(with_kid(fail(
                    ErrorCode::RateAbuse,
                    Step::Replay,
                    format!(
                        "the replay cache for key {keyid:?} filled up; the sender exceeds the allowed rate"
                    ),
                )));
            }
        }

        Ok(VerifiedWebhook {
            keyid: keyid.to_owned(),
            algorithm: alg,
            label: input.label.clone(),
            created: params.created,
            expires: params.expires,
            nonce: params.nonce.to_owned(),
            verified_at: now,
        })
    }

    fn check_window(&self, created: i64, expires: i64, now: i64) -> Result<(), VerifyError> {
        let window = |m: String| fail(ErrorCode::WindowInvalid, Step::Window, m);
        if expires <= created {
            return Err(window(format!(
                "expires ({expires}) must be after created ({created})"
            )));
        }
        if expires.saturating_sub(created) > i64::from(MAX_WINDOW_SECS) {
            return Err(window(format!(
                "the window is {} s; the profile allows at most {MAX_WINDOW_SECS} s",
                expires.saturating_sub(created)
            )));
        }
        if created.saturating_sub(self.max_skew) > now {
            return Err(window(format!(
                "created ({created}) is more than {} s in the future (now {now}); check the sender's clock",
                self.max_skew
            )));
        }
        if expires.saturating_add(self.max_skew) < now {
            return Err(window(format!(
                "the signature expired at {expires} (now {now})"
            )));
        }
        Ok(())
    }
}

/// The six required parameters of the selected signature.
struct Params<'a> {
    created: i64,
    expires: i64,
    nonce: &'a str,
    keyid: &'a str,
    alg: &'a str,
    tag: &'a str,
}

impl<'a> Params<'a> {
    fn read(input: &'a SignatureInput) -> Result<Self, VerifyError> {
        const REQUIRED: [&str; 6] = ["created", "expires", "nonce", "keyid", "alg", "tag"];
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|p| input.param(p).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(fail(
                ErrorCode::ParamsIncomplete,
                Step::Params,
                format!("Signature-Input lacks {missing:?}; webhook signatures carry {REQUIRED:?}"),
            ));
        }
        let wrong = |name: &str, ty: &str| {
            fail(
                ErrorCode::HeaderMalformed,
                Step::Params,
                format!("signature parameter {name} must be {ty}"),
            )
        };
        let int = |name: &'static str| input.integer(name).ok_or_else(|| wrong(name, "an integer"));
        let string = |name: &'static str| {
            let v = input.string(name).ok_or_else(|| wrong(name, "a string"))?;
            if v.is_empty() || v.len() > MAX_PARAM_LEN {
                return Err(fail(
                    ErrorCode::HeaderMalformed,
                    Step::Params,
                    format!("signature parameter {name} must be 1 to {MAX_PARAM_LEN} bytes long"),
                ));
            }
            Ok(v)
        };
        Ok(Self {
            created: int("created")?,
            expires: int("expires")?,
            nonce: string("nonce")?,
            keyid: string("keyid")?,
            alg: string("alg")?,
            tag: string("tag")?,
        })
    }
}
