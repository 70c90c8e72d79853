//! [`WebhookSender::challenge_destination`]: prove that a buyer controls a webhook URL before
//! a durable subscription to it starts.

use super::{DeliveryResult, SendError, WebhookSender};
use crate::payload::{
    ChallengeEchoError, ChallengeValue, EchoField, WebhookChallenge, check_challenge_echo,
};
use crate::prepared::IntoWebhookUrl;

/// A destination that answered its challenge correctly.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChallengeProof {
    /// The value that was echoed.
    pub challenge: ChallengeValue,
    /// The response field that carried it.
    pub echoed_field: EchoField,
    /// The exchange: status, response headers and body, what was sent.
    pub delivery: DeliveryResult,
}

/// Why a destination did not prove control of its URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The challenge was not sent or got no HTTP answer: an invalid challenge, a URL the
    /// destination policy refuses, or a transport error ([`SendError::Transport`]).
    #[error("the challenge was not delivered: {0}")]
    Send(#[from] SendError),
    /// The endpoint answered with a status other than 2xx.
    #[error(
        "{url} answered the challenge with HTTP {status}; the endpoint must verify the signed \
         challenge and answer 2xx with {{\"challenge\":\"<value>\"}}"
    )]
    Status {
        /// The destination.
        url: String,
        /// The status it answered.
        status: u16,
        /// The exchange.
        delivery: Box<DeliveryResult>,
    },
    /// The response body was cut at the transport's cap; an echo is a few hundred bytes.
    #[error(
        "{url} answered the challenge with a body over the {} bytes read; an echo is \
         {{\"challenge\":\"<value>\"}}", delivery.response_body.len()
    )]
    ResponseTooLarge {
        /// The destination.
        url: String,
        /// The exchange (with the first bytes of the body).
        delivery: Box<DeliveryResult>,
    },
    /// The endpoint answered 2xx but did not echo the challenge as the schema says.
    #[error("{url} did not echo the challenge: {source}")]
    Echo {
        /// The destination.
        url: String,
        /// What is wrong with the response.
        #[source]
        source: ChallengeEchoError,
        /// The exchange.
        delivery: Box<DeliveryResult>,
    },
}

impl ChallengeError {
    /// A short code, the official Python SDK's where it has one: `request_failed` (not
    /// delivered), `http_status`, `response_too_large`, or the echo's
    /// [`reason`](ChallengeEchoError::reason) (`invalid_json`, `missing_echo`,
    /// `challenge_mismatch`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Send(_) => "request_failed",
            Self::Status { .. } => "http_status",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::Echo { source, .. } => source.reason(),
        }
    }

    /// The exchange, when the endpoint answered.
    pub fn delivery(&self) -> Option<&DeliveryResult> {
        match self {
            Self::Send(_) => None,
            Self::Status { delivery, .. }
            | Self::ResponseTooLarge { delivery, .. }
            | Self::Echo { delivery, .. } => Some(delivery),
        }
    }
}

impl WebhookSender {
    /// Sign and POST a destination challenge once, without looking at the answer (see
    /// [`challenge_destination`](Self::challenge_destination) for the checked exchange). The
    /// body has no `idempotency_key`; the result's key is the challenge value.
    pub async fn send_webhook_challenge<U: IntoWebhookUrl>(
        &self,
        url: U,
        challenge: &WebhookChallenge,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, challenge).await
    }

    /// Prove that the endpoint at `url` is the buyer's before activating a durable
    /// `notification_configs[]` subscription to it: POST `challenge` signed (one attempt,
    /// through the destination policy), and check that the endpoint answered 2xx with the
    /// challenge value echoed as `core/webhook-challenge-response.json` says (exactly one of
    /// `challenge` or `token`, nothing else).
    ///
    /// [`WebhookChallenge::new`] draws a fresh random value; build a new challenge for every
    /// proof, so an old answer can never pass for a new one.
    ///
    /// ```no_run
    /// # async fn demo(sender: adcp_webhooks::WebhookSender) -> Result<(), Box<dyn std::error::Error>> {
    /// use adcp_webhooks::payload::{DeliveryAuth, WebhookChallenge};
    /// use adcp_webhooks::sender::ChallengeError;
    ///
    /// let challenge = WebhookChallenge::new(
    ///     "acct_123",
    ///     "buyer-primary",
    ///     "https://seller.example/adcp",
    ///     DeliveryAuth::Rfc9421,
    ///     ["creative.status_changed"],
    /// );
    /// match sender.challenge_destination("https://buyer.example/hooks", &challenge).await {
    ///     Ok(proof) => println!("proved (echo in `{}`)", proof.echoed_field.as_str()),
    ///     Err(e @ ChallengeError::Echo { .. }) => eprintln!("wrong echo: {e}"),
    ///     Err(e) => eprintln!("{} ({})", e, e.reason()),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ChallengeError`]: not delivered, not 2xx, a body too large, or a wrong echo.
    pub async fn challenge_destination<U: IntoWebhookUrl>(
        &self,
        url: U,
        challenge: &WebhookChallenge,
    ) -> Result<ChallengeProof, ChallengeError> {
        let delivery = self.send_webhook_challenge(url, challenge).await?;
        let url = delivery.url.clone();
        if !delivery.ok() {
            return Err(ChallengeError::Status {
                url,
                status: delivery.status,
                delivery: Box::new(delivery),
            });
        }
        if delivery.response_truncated {
            return Err(ChallengeError::ResponseTooLarge {
                url,
                delivery: Box::new(delivery),
            });
        }
        match check_challenge_echo(&delivery.response_body, &challenge.challenge) {
            Ok(echoed_field) => Ok(ChallengeProof {
                challenge: challenge.challenge.clone(),
                echoed_field,
                delivery,
            }),
            Err(source) => Err(ChallengeError::Echo {
                url,
                source,
                delivery: Box::new(delivery),
            }),
        }
    }
}
