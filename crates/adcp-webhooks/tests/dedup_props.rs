//! Property tests of the dedup state machine: any interleaving of claim / acknowledge /
//! release / clock advance from two replicas sharing one store matches a reference model,
//! acknowledges at most one processing per key, and a released or expired claim can always be
//! claimed again with the same body (another body stays a conflict). The clock is a number passed in; nothing sleeps.

use adcp_webhooks::verify::{BodyDigest, ClaimToken, DedupClaim, InMemoryDedupStore};
use proptest::prelude::*;
use std::collections::HashMap;

const LEASE: i64 = 30;
const KEYS: [&str; 2] = ["whk_prop_key_a", "whk_prop_key_b"];
const SCOPE: &str = "[\"seller\",\"kid\",\"\"]";

#[derive(Debug, Clone)]
enum Op {
    Claim {
        replica: usize,
        key: usize,
        body: u8,
    },
    Ack {
        replica: usize,
        key: usize,
    },
    Release {
        replica: usize,
        key: usize,
    },
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..2usize, 0..2u8).prop_map(|(replica, key, body)| Op::Claim { replica, key, body }),
        2 => (0..2usize, 0..2usize).prop_map(|(replica, key)| Op::Ack { replica, key }),
        2 => (0..2usize, 0..2usize).prop_map(|(replica, key)| Op::Release { replica, key }),
        2 => (0..=2 * LEASE).prop_map(Op::Advance),
    ]
}

/// The reference model of one key.
#[derive(Debug, Clone, PartialEq)]
enum Model {
    Absent,
    Claimed {
        token: ClaimToken,
        lease_until: i64,
        body: u8,
    },
    Done {
        body: u8,
    },
    /// Released by its claimant: the body is remembered, the key claimable at once.
    Released {
        body: u8,
    },
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn two_replicas_on_one_store_follow_the_state_machine(ops in prop::collection::vec(op(), 1..80)) {
        let store = InMemoryDedupStore::new(1_000_000_000, 1_000);
        let digests = [BodyDigest::of(b"{\"v\":0}"), BodyDigest::of(b"{\"v\":1}")];
        let mut now = 1_000i64;
        let mut model = vec![Model::Absent; KEYS.len()];
        // The tokens each replica holds per key, newest last (a replica may hold a stale one).
        let mut held: Vec<HashMap<usize, Vec<ClaimToken>>> = vec![HashMap::new(), HashMap::new()];
        let mut acknowledged = [0u32; KEYS.len()];

        for op in ops {
            match op {
                Op::Advance(secs) => now += secs,
                Op::Claim { replica, key, body } => {
                    let got = store.claim_now(SCOPE, KEYS[key], &digests[usize::from(body)], now, LEASE);
                    let expected_kind = match &model[key] {
                        Model::Absent => "fresh",
                        Model::Claimed { body: b, .. } | Model::Done { body: b } | Model::Released { body: b }
                            if *b != body => "conflict",
                        Model::Done { .. } => "done",
                        Model::Released { .. } => "fresh",
                        Model::Claimed { lease_until, .. } if *lease_until > now => "in_progress",
                        Model::Claimed { .. } => "fresh",
                    };
                    match got {
                        DedupClaim::Fresh { token } => {
                            prop_assert_eq!(expected_kind, "fresh");
                            // A released or expired claim (or a new key) is always claimable.
                            model[key] = Model::Claimed { token: token.clone(), lease_until: now + LEASE, body };
                            held[replica].entry(key).or_default().push(token);
                        }
                        DedupClaim::InProgress { retry_after } => {
                            prop_assert_eq!(expected_kind, "in_progress");
                            let Model::Claimed { lease_until, .. } = &model[key] else { unreachable!() };
                            prop_assert_eq!(i64::try_from(retry_after).unwrap(), lease_until - now);
                            prop_assert!(retry_after >= 1);
                        }
                        DedupClaim::Done => prop_assert_eq!(expected_kind, "done"),
                        DedupClaim::Conflict => prop_assert_eq!(expected_kind, "conflict"),
                    }
                }
                Op::Ack { replica, key } | Op::Release { replica, key } => {
                    let ack = matches!(op, Op::Ack { .. });
                    let Some(token) = held[replica].get_mut(&key).and_then(Vec::pop) else {
                        continue;
                    };
                    let owns = matches!(&model[key], Model::Claimed { token: t, .. } if *t == token);
                    let settled = if ack {
                        store.acknowledge_now(SCOPE, KEYS[key], &token, now)
                    } else {
                        store.release_now(SCOPE, KEYS[key], &token)
                    };
                    // Only the current claimant settles; a superseded, released or
                    // acknowledged token changes nothing.
                    prop_assert_eq!(settled, owns);
                    if settled {
                        if ack {
                            acknowledged[key] += 1;
                            let Model::Claimed { body, .. } = model[key] else { unreachable!() };
                            model[key] = Model::Done { body };
                        } else {
                            let Model::Claimed { body, .. } = model[key] else { unreachable!() };
                            model[key] = Model::Released { body };
                        }
                    }
                }
            }
            // At most one acknowledged processing per key, whatever the interleaving.
            prop_assert!(acknowledged.iter().all(|n| *n <= 1), "{acknowledged:?}");
        }

        // Liveness: whatever happened, a key not done can be claimed after its lease.
        now += LEASE;
        for (key, m) in model.iter().enumerate() {
            let body = match m {
                Model::Claimed { body, .. } | Model::Done { body } | Model::Released { body } => *body,
                Model::Absent => 0,
            };
            let got = store.claim_now(SCOPE, KEYS[key], &digests[usize::from(body)], now, LEASE);
            match m {
                Model::Done { .. } => prop_assert_eq!(got, DedupClaim::Done),
                _ => prop_assert!(matches!(got, DedupClaim::Fresh { .. }), "{got:?}"),
            }
        }
    }
}

/// Two threads racing to claim the same keys on one store: exactly one wins each key.
#[test]
fn racing_claims_from_two_threads_give_one_fresh_claim_per_key() {
    let store = std::sync::Arc::new(InMemoryDedupStore::default());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let digest = BodyDigest::of(b"{}");
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..2_000)
                    .filter(|i| {
                        matches!(
                            store.claim_now(SCOPE, &format!("whk_race_{i:06}"), &digest, 0, LEASE),
                            DedupClaim::Fresh { .. }
                        )
                    })
                    .count()
            })
        })
        .collect();
    let fresh: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(fresh, 2_000);
    assert_eq!(store.len(), 2_000);
}
