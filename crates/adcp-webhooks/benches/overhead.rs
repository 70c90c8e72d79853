//! The signing pipeline's overhead over the bare primitive, robust to a shared, noisy machine.
//!
//! Criterion measures one function after another, so load that comes and goes between the two
//! skews their ratio. Here short blocks of the two alternate (primitive, pipeline, primitive,
//! ...), each pair gives a ratio, and the median of those ratios is reported: both sides of a
//! pair see the same machine.
//!
//! - primitive: SHA-256 of the body plus one raw signature over a base of the real length;
//! - pipeline: `sign_webhook` (canonicalize the URL, Content-Digest, signature base, nonce,
//!   sign, format the three headers).
//!
//! Run: `cargo bench -p adcp-webhooks --bench overhead` (prints one JSON line per algorithm
//! and body size).

use std::hint::black_box;
use std::time::Instant;

use adcp_webhooks::clock::{RandomNonce, SystemClock};
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{SignOptions, sign_webhook};

const URL: &str = "https://buyer.example.com/adcp/webhook/create_media_buy/agent_123/op_abc";
const ROUNDS: usize = 41;

fn body(len: usize) -> Vec<u8> {
    let head = br#"{"idempotency_key":"whk_01HW9D3H8FZP2N6R8T0V4X6Z9B","padding":""#;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(head);
    out.resize(len.saturating_sub(2), b'x');
    out.extend_from_slice(b"\"}");
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter, if any, selects algorithms by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (alg, name) in [
        (Algorithm::Ed25519, "ed25519"),
        (Algorithm::EcdsaP256Sha256, "es256"),
    ] {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let key = SigningKey::generate(alg, "bench-2026-01", KeyPurpose::WebhookSigning)
            .expect("key generation");
        for (size, size_name) in [(1024, "1KiB"), (16 * 1024, "16KiB"), (1024 * 1024, "1MiB")] {
            let body = body(size);
            let sign = || {
                sign_webhook(
                    "POST",
                    URL,
                    &[("Content-Type", "application/json")][..],
                    &body,
                    &key,
                    &SignOptions::default(),
                    &SystemClock,
                    &RandomNonce,
                )
                .expect("signing")
            };
            let base = sign().signature_base;
            // About 5 ms per block whatever the size.
            let per_block = (5_000_000 / (size / 2 + 30_000)).max(3);
            let primitive = || {
                for _ in 0..per_block {
                    black_box(aws_lc_rs::digest::digest(
                        &aws_lc_rs::digest::SHA256,
                        black_box(&body),
                    ));
                    black_box(key.sign(black_box(base.as_bytes())).expect("sign"));
                }
            };
            let pipeline = || {
                for _ in 0..per_block {
                    black_box(sign());
                }
            };
            primitive();
            pipeline();
            let (mut prim_ns, mut pipe_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let t = Instant::now();
                primitive();
                let p = t.elapsed().as_nanos() as f64 / per_block as f64;
                let t = Instant::now();
                pipeline();
                let q = t.elapsed().as_nanos() as f64 / per_block as f64;
                prim_ns.push(p);
                pipe_ns.push(q);
                ratios.push(q / p);
            }
            println!(
                "{{\"bench\":\"overhead\",\"alg\":\"{name}\",\"body\":\"{size_name}\",\"primitive_us\":{:.2},\"pipeline_us\":{:.2},\"ratio\":{:.3},\"rounds\":{ROUNDS}}}",
                median(&mut prim_ns) / 1000.0,
                median(&mut pipe_ns) / 1000.0,
                median(&mut ratios),
            );
        }
    }
}
