//! The retry policy: schedule, jitter bounds, classification, `Retry-After` and the horizon,
//! all with injected time and randomness (no sleeps).
use adcp_webhooks::delivery::classify::*;
use adcp_webhooks::delivery::schedule::*;
use adcp_webhooks::verify::ErrorCode;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

fn h(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_owned(), value.to_owned())]
}

#[test]
fn default_schedule_is_standard_webhooks() {
    let p = RetryPolicy::default().with_jitter(0.0);
    let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000, 36_000];
    for (i, secs) in expected.iter().enumerate() {
        let retry = u32::try_from(i + 1).unwrap_or(u32::MAX);
        assert_eq!(
            p.delay(retry, 0.3),
            Duration::from_secs(*secs),
            "retry {retry}"
        );
    }
    assert_eq!(p.horizon(), Duration::from_secs(24 * 3600));
}

#[test]
fn jitter_spreads_around_the_base() {
    let p = RetryPolicy::default();
    assert_eq!(p.delay(1, 0.0), Duration::from_secs(4));
    assert_eq!(p.delay(1, 0.5), Duration::from_secs(5));
    assert_eq!(p.delay(1, 1.0), Duration::from_secs(6));
    assert!(p.delay(2, 0.99) > p.delay(2, 0.01));
}

#[test]
fn classifies_statuses() {
    assert_eq!(
        classify_response(200, &[], 0),
        Classification::Delivered { status: 200 }
    );
    assert_eq!(
        classify_response(204, &[], 0),
        Classification::Delivered { status: 204 }
    );
    for (status, class) in [
        (500, ErrorClass::Http5xx),
        (503, ErrorClass::Http5xx),
        (408, ErrorClass::Http408),
        (429, ErrorClass::Http429),
    ] {
        assert_eq!(
            classify_response(status, &[], 0),
            Classification::Retryable {
                class,
                retry_after: None
            }
        );
    }
    for status in [400, 403, 404, 413, 422] {
        assert_eq!(
            classify_response(status, &[], 0),
            Classification::Permanent {
                class: ErrorClass::Http4xx,
                reason: DeadReason::Rejected { status }
            }
        );
    }
    assert_eq!(classify_response(410, &[], 0), Classification::Gone);
    assert_eq!(classify_response(301, &[], 0).class(), ErrorClass::Http3xx);
}

#[test]
fn signature_rejection_is_dead_with_its_code() {
    let headers = h(
        "www-authenticate",
        r#"Signature error="webhook_signature_window_invalid", realm="x""#,
    );
    assert_eq!(
        classify_response(401, &headers, 0),
        Classification::Permanent {
            class: ErrorClass::SignatureRejected,
            reason: DeadReason::SignatureRejected {
                error: ErrorCode::WindowInvalid
            },
        }
    );
    // A 401 without the signature challenge is still a permanent 4xx, recorded as such.
    let bearer = h("WWW-Authenticate", r#"Bearer error="invalid_token""#);
    assert_eq!(
        classify_response(401, &bearer, 0).class(),
        ErrorClass::Http4xx
    );
    // An error param under another scheme is not a signature rejection.
    let other = h(
        "WWW-Authenticate",
        r#"Bearer error="webhook_signature_key_unknown""#,
    );
    assert_eq!(
        classify_response(401, &other, 0).class(),
        ErrorClass::Http4xx
    );
    // Unquoted token values, odd spacing and multiple challenges.
    let many = h(
        "WWW-Authenticate",
        "Basic realm=\"a,b\" , signature  error = webhook_signature_key_revoked",
    );
    assert_eq!(
        ErrorCode::from_challenge(&many[0].1),
        Some(ErrorCode::KeyRevoked)
    );
    assert_eq!(
        classify_response(401, &many, 0),
        Classification::Permanent {
            class: ErrorClass::SignatureRejected,
            reason: DeadReason::SignatureRejected {
                error: ErrorCode::KeyRevoked
            },
        }
    );
    let escaped = h(
        "WWW-Authenticate",
        r#"Signature realm="q\"uote", error="webhook_signature_digest_mismatch""#,
    );
    assert_eq!(
        ErrorCode::from_challenge(&escaped[0].1),
        Some(ErrorCode::DigestMismatch)
    );
    assert_eq!(
        ErrorCode::from_challenge("Signature error=\"unterminated"),
        None
    );
    // A code this profile does not define is not taken for a signature rejection.
    assert_eq!(
        ErrorCode::from_challenge(r#"Signature error="webhook_signature_from_the_future""#),
        None
    );
    // What a receiver writes, a sender reads back, for every code.
    for code in ErrorCode::ALL {
        let answer = h("WWW-Authenticate", &code.challenge());
        assert_eq!(
            classify_response(401, &answer, 0),
            Classification::Permanent {
                class: ErrorClass::SignatureRejected,
                reason: DeadReason::SignatureRejected { error: code },
            }
        );
    }
}

#[test]
fn retry_after_seconds_and_dates() {
    let now_ms = 1_700_000_000_000;
    assert_eq!(
        parse_retry_after(" 7 ", now_ms),
        Some(Duration::from_secs(7))
    );
    assert_eq!(parse_retry_after("0", now_ms), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now_ms),
        Some(Duration::MAX)
    );
    // 2023-11-14T22:13:20Z is 1_700_000_000; 90 s later in each of the three formats.
    for date in [
        "Tue, 14 Nov 2023 22:14:50 GMT",
        "Tuesday, 14-Nov-23 22:14:50 GMT",
        "Tue Nov 14 22:14:50 2023",
    ] {
        assert_eq!(
            parse_retry_after(date, now_ms),
            Some(Duration::from_secs(90)),
            "{date}"
        );
    }
    assert_eq!(
        parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now_ms),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("-5", now_ms), None);
    assert_eq!(parse_retry_after("1.5", now_ms), None);
    assert_eq!(parse_retry_after("", now_ms), None);
}

#[test]
fn retry_after_pushes_later_never_earlier_and_is_capped() {
    let p = RetryPolicy::default().with_jitter(0.0);
    let now = 1_000_000;
    let deadline = now + 24 * HOUR_MS;
    let later = classify_response(503, &h("Retry-After", "60"), now);
    assert_eq!(
        p.decide(&later, 1, deadline, now, 0.5),
        Decision::Retry {
            at_ms: now + 60_000
        }
    );
    // Shorter than the schedule's 5 min before the third attempt: the schedule wins.
    let sooner = classify_response(429, &h("Retry-After", "1"), now);
    assert_eq!(
        p.decide(&sooner, 2, deadline, now, 0.5),
        Decision::Retry {
            at_ms: now + 300_000
        }
    );
    // A week is cut to the one-hour cap.
    let week = classify_response(503, &h("Retry-After", "604800"), now);
    assert_eq!(
        p.decide(&week, 1, deadline, now, 0.5),
        Decision::Retry {
            at_ms: now + HOUR_MS
        }
    );
    // A date, read against the injected clock.
    let clock = adcp_webhooks::clock::FixedClock::new(1_700_000_000);
    use adcp_webhooks::clock::Clock as _;
    let now = clock.now_unix() * 1000;
    let dated = classify_response(503, &h("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"), now);
    assert_eq!(
        p.decide(&dated, 1, now + 24 * HOUR_MS, now, 0.5),
        Decision::Retry {
            at_ms: now + 120_000
        }
    );
    clock.advance(100);
    let now = clock.now_unix() * 1000;
    let dated = classify_response(503, &h("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"), now);
    assert_eq!(
        dated,
        Classification::Retryable {
            class: ErrorClass::Http5xx,
            retry_after: Some(Duration::from_secs(20))
        }
    );
}

#[test]
fn horizon_and_attempt_limits() {
    let p = RetryPolicy::default().with_jitter(0.0).with_max_attempts(5);
    let fail = classify_failure(ErrorClass::Connect, "refused");
    let start = 0;
    let deadline = start + 24 * HOUR_MS;
    // The 7th retry would land at 27.5 h; it is made at the horizon instead.
    let p8 = RetryPolicy::default().with_jitter(0.0);
    let now = 17 * HOUR_MS + 35 * 60_000 + 5_000;
    assert_eq!(
        p8.decide(&fail, 7, deadline, now, 0.5),
        Decision::Retry { at_ms: deadline }
    );
    assert_eq!(
        p8.decide(&fail, 8, deadline, deadline, 0.5),
        Decision::Dead(DeadReason::Horizon)
    );
    assert_eq!(
        p.decide(&fail, 5, deadline, 0, 0.5),
        Decision::Dead(DeadReason::MaxAttempts { attempts: 5 })
    );
    assert_eq!(
        p.decide(&fail, 4, deadline, 0, 0.5),
        Decision::Retry { at_ms: 7_200_000 }
    );
    // A Retry-After past the horizon is respected by stopping, not by retrying early.
    let wait = classify_response(503, &h("Retry-After", "3000"), 0);
    assert_eq!(
        p.decide(&wait, 1, 1_000_000, 0, 0.5),
        Decision::Dead(DeadReason::Horizon)
    );
}

#[test]
fn a_retry_clamped_to_the_horizon_still_honours_retry_after() {
    // Found by the property test below: the schedule said 2 h, the horizon was 1 ms away and
    // Retry-After asked for 1 s. Retrying at the horizon would have ignored Retry-After.
    let p = RetryPolicy::default();
    let wait = Classification::Retryable {
        class: ErrorClass::Http5xx,
        retry_after: Some(Duration::from_secs(1)),
    };
    assert_eq!(
        p.decide(&wait, 4, 1, 0, 0.0),
        Decision::Dead(DeadReason::Horizon)
    );
    let no_wait = Classification::Retryable {
        class: ErrorClass::Http5xx,
        retry_after: None,
    };
    assert_eq!(
        p.decide(&no_wait, 4, 1, 0, 0.0),
        Decision::Retry { at_ms: 1 }
    );
}

#[test]
fn permanent_gone_and_delivered_decisions() {
    let p = RetryPolicy::default();
    assert_eq!(
        p.decide(&classify_response(201, &[], 0), 1, 10, 0, 0.5),
        Decision::Delivered
    );
    assert_eq!(
        p.decide(&classify_response(410, &[], 0), 1, 10, 0, 0.5),
        Decision::DisableDestination
    );
    assert_eq!(
        p.decide(&classify_response(404, &[], 0), 1, 10, 0, 0.5),
        Decision::Dead(DeadReason::Rejected { status: 404 })
    );
    assert!(matches!(
        p.decide(
            &classify_failure(ErrorClass::Refused, "private address"),
            1,
            10,
            0,
            0.5
        ),
        Decision::Dead(DeadReason::Refused { .. })
    ));
    assert_eq!(
        p.decide(
            &classify_failure(ErrorClass::Timeout, "10 s"),
            1,
            HOUR_MS,
            0,
            0.5
        ),
        Decision::Retry { at_ms: 5_000 }
    );
}

#[test]
fn exponential_backoff_caps() {
    let b = Backoff::Exponential {
        initial: Duration::from_secs(1),
        multiplier: 2.0,
        max: Duration::from_secs(30),
    };
    assert_eq!(b.base_delay(1), Duration::from_secs(1));
    assert_eq!(b.base_delay(5), Duration::from_secs(16));
    assert_eq!(b.base_delay(6), Duration::from_secs(30));
    assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(30));
    let weird = Backoff::Exponential {
        initial: Duration::from_secs(2),
        multiplier: f64::NAN,
        max: Duration::from_secs(30),
    };
    assert_eq!(weird.base_delay(9), Duration::from_secs(2));
    assert_eq!(Backoff::Schedule(vec![]).base_delay(3), Duration::ZERO);
}

#[test]
fn class_names_round_trip() {
    for c in ErrorClass::ALL {
        assert_eq!(ErrorClass::from_name(c.as_str()), Some(c));
    }
    assert!(ErrorClass::Http5xx.is_destination_failure());
    assert!(!ErrorClass::Http4xx.is_destination_failure());
}

mod props {
    use adcp_webhooks::delivery::classify::*;
    use adcp_webhooks::delivery::schedule::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn backoffs() -> impl Strategy<Value = Backoff> {
        prop_oneof![
            Just(Backoff::standard_webhooks()),
            proptest::collection::vec(0u64..200_000, 0..10)
                .prop_map(|v| Backoff::Schedule(v.into_iter().map(Duration::from_secs).collect())),
            (0u64..10_000, 0.5f64..10.0, 0u64..1_000_000).prop_map(|(i, m, x)| {
                Backoff::Exponential {
                    initial: Duration::from_millis(i),
                    multiplier: m,
                    max: Duration::from_secs(x),
                }
            }),
        ]
    }

    proptest! {
        // Failures print their minimal input; cases worth keeping become plain tests above.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn delay_stays_within_jitter_and_cap(
            backoff in backoffs(),
            jitter in 0.0f64..1.0,
            cap_secs in 0u64..100_000,
            retry in 1u32..1000,
            sample in 0.0f64..1.0,
        ) {
            let p = RetryPolicy::default()
                .with_backoff(backoff.clone())
                .with_jitter(jitter)
                .with_max_delay(Duration::from_secs(cap_secs));
            let d = p.delay(retry, sample).as_secs_f64();
            let base = backoff.base_delay(retry).min(p.max_delay()).as_secs_f64();
            prop_assert!(d <= cap_secs as f64 + 1e-9, "delay {d} over cap {cap_secs}");
            prop_assert!(d >= base * (1.0 - jitter) - 1e-6, "delay {d} under {base} - {jitter}");
            prop_assert!(d <= base * (1.0 + jitter) + 1e-6, "delay {d} over {base} + {jitter}");
        }

        #[test]
        fn retries_never_land_before_now_or_after_the_deadline(
            retry in 1u32..30,
            now in 0i64..1_000_000_000,
            window in 0i64..200_000_000,
            sample in 0.0f64..1.0,
            retry_after in proptest::option::of(0u64..1_000_000),
        ) {
            let p = RetryPolicy::default().with_max_attempts(1000);
            let outcome = Classification::Retryable {
                class: ErrorClass::Http5xx,
                retry_after: retry_after.map(Duration::from_secs),
            };
            match p.decide(&outcome, retry, now + window, now, sample) {
                Decision::Retry { at_ms } => {
                    prop_assert!(at_ms >= now && at_ms <= now + window);
                    if let Some(ra) = retry_after {
                        let honoured = (ra as i64 * 1000).min(3_600_000);
                        prop_assert!(at_ms >= now + honoured);
                    }
                }
                Decision::Dead(DeadReason::Horizon) => prop_assert!(window == 0 || retry_after.is_some()),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn retry_after_never_panics(s in ".{0,64}", now in proptest::num::i64::ANY) {
            let _ = parse_retry_after(&s, now);
            let _ = adcp_webhooks::verify::ErrorCode::from_challenge(&s);
        }
    }
}
