//! Criterion benches for everything a webhook costs apart from the network.
//!
//! - `pipeline`: `sign_webhook` (canonicalize the URL, Content-Digest, signature base, sign,
//!   format the headers) for 1 KiB, 16 KiB and 1 MiB bodies, beside `primitive`: the bare cost
//!   of the same work done by the primitives alone (SHA-256 of the body plus one raw signature
//!   over a signature base of the same length), measured in the same run so the ratio holds on
//!   a noisy machine. `sender_sign` is `WebhookSender::sign`, what each send actually runs.
//! - `sha256`: the two SHA-256 implementations in the tree, side by side.
//! - `canonicalize_url`: the `@target-uri` / `@authority` rules for a few URL shapes.
//! - `verify`: the bare signature check and the full receiver checklist.
//! - `payload`: serializing a typical MCP task-status webhook once.
//!
//! Run: `cargo bench -p adcp-webhooks --bench signing` (add `-- pipeline` to filter).

use std::hint::black_box;
use std::time::Duration;

use adcp_webhooks::clock::{Clock as _, FixedClock, RandomNonce, SystemClock};
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{
    SignOptions, canonicalize_url, content_digest, sign_webhook, verify_webhook_signature,
};
use adcp_webhooks::verify::{ReceivedRequest, StaticJwks, WebhookVerifier};
use adcp_webhooks::{McpWebhook, PreparedWebhook, WebhookSender};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const URL: &str = "https://buyer.example.com/adcp/webhook/create_media_buy/agent_123/op_abc";
const SIZES: [(usize, &str); 3] = [(1024, "1KiB"), (16 * 1024, "16KiB"), (1024 * 1024, "1MiB")];
const ALGS: [(Algorithm, &str); 2] = [
    (Algorithm::Ed25519, "ed25519"),
    (Algorithm::EcdsaP256Sha256, "es256"),
];

fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, "bench-2026-01", KeyPurpose::WebhookSigning).expect("key generation")
}

/// A JSON body of exactly `len` bytes.
fn body(len: usize) -> Vec<u8> {
    let head = br#"{"idempotency_key":"whk_01HW9D3H8FZP2N6R8T0V4X6Z9B","padding":""#;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(head);
    out.resize(len.saturating_sub(2), b'x');
    out.extend_from_slice(b"\"}");
    out
}

fn sign_once(key: &SigningKey, body: &[u8]) -> adcp_webhooks::signing::SignedHeaders {
    sign_webhook(
        "POST",
        URL,
        &[("Content-Type", "application/json")][..],
        body,
        key,
        &SignOptions::default(),
        &SystemClock,
        &RandomNonce,
    )
    .expect("signing")
}

fn pipeline(c: &mut Criterion) {
    for (alg, alg_name) in ALGS {
        let key = key(alg);
        let mut group = c.benchmark_group(format!("pipeline/{alg_name}"));
        for (size, size_name) in SIZES {
            let body = body(size);
            let base = sign_once(&key, &body).signature_base;
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new("primitive", size_name),
                &body,
                |b, body| {
                    b.iter(|| {
                        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
                        black_box(digest);
                        black_box(key.sign(black_box(base.as_bytes())).expect("sign"))
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("sign_webhook", size_name),
                &body,
                |b, body| b.iter(|| black_box(sign_once(&key, black_box(body)))),
            );
        }
        group.finish();
    }
}

/// ES256 signing with the two P-256 implementations in the tree: aws-lc-rs (what the keys
/// use) and RustCrypto's `p256` (used only for key-format work).
fn backend(c: &mut Criterion) {
    use p256::ecdsa::signature::Signer as _;
    let mut group = c.benchmark_group("es256_backend");
    let base = sign_once(&key(Algorithm::EcdsaP256Sha256), &body(1024)).signature_base;
    let aws = key(Algorithm::EcdsaP256Sha256);
    group.bench_function("aws-lc-rs", |b| {
        b.iter(|| black_box(aws.sign(black_box(base.as_bytes())).expect("sign")))
    });
    let rust_crypto = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("scalar");
    group.bench_function("p256 (RustCrypto)", |b| {
        b.iter(|| {
            let sig: p256::ecdsa::Signature = rust_crypto.sign(black_box(base.as_bytes()));
            black_box(sig)
        })
    });
    group.finish();
}

fn sender_sign(c: &mut Criterion) {
    let mut group = c.benchmark_group("sender_sign");
    for (alg, alg_name) in ALGS {
        let sender = WebhookSender::new(key(alg)).expect("sender");
        let prepared = PreparedWebhook::new(URL, &mcp_webhook(0)).expect("prepared");
        group.bench_function(BenchmarkId::new(alg_name, "mcp"), |b| {
            b.iter(|| black_box(sender.sign(black_box(&prepared)).expect("sign")))
        });
    }
    group.finish();
}

fn sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for (size, size_name) in SIZES {
        let body = body(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("aws-lc-rs", size_name),
            &body,
            |b, body| {
                b.iter(|| black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body)))
            },
        );
        group.bench_with_input(BenchmarkId::new("sha2", size_name), &body, |b, body| {
            use sha2::Digest as _;
            b.iter(|| black_box(sha2::Sha256::digest(body)))
        });
        group.bench_with_input(
            BenchmarkId::new("content_digest", size_name),
            &body,
            |b, body| b.iter(|| black_box(content_digest(body))),
        );
    }
    group.finish();
}

fn canonical(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonicalize_url");
    for (name, url) in [
        ("plain", URL),
        ("port_query", "https://Buyer.Example.com:443/a/b?x=1&y=%7e"),
        (
            "dot_segments",
            "https://buyer.example.com/a/./b/../c/%7Euser?q=a%20b",
        ),
        ("idn", "https://bücher.example/webhook"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(canonicalize_url(black_box(url)).expect("url")))
        });
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    let body = body(1024);
    for (alg, alg_name) in ALGS {
        let key = key(alg);
        let signed = sign_once(&key, &body);
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        headers.extend(signed.headers());
        let public = key.verifying_key();
        group.bench_function(BenchmarkId::new("signature_only", alg_name), |b| {
            b.iter(|| {
                black_box(
                    verify_webhook_signature("POST", URL, &headers, &body, &public, "sig1")
                        .expect("verifies"),
                )
            })
        });

        // The full checklist claims each nonce once, so every iteration gets a freshly
        // signed request (signed outside the timed part).
        let jwks = StaticJwks::from_json(&serde_json::json!({ "keys": [key.public_jwk()] }))
            .expect("jwks");
        let now = SystemClock.now_unix();
        let verifier = WebhookVerifier::builder(jwks)
            .clock(FixedClock::new(now))
            .build();
        group.bench_function(BenchmarkId::new("checklist", alg_name), |b| {
            b.iter_batched(
                || {
                    let signed = sign_once(&key, &body);
                    let mut headers: Vec<(String, String)> =
                        vec![("Content-Type".into(), "application/json".into())];
                    headers.extend(
                        signed
                            .headers()
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                    );
                    headers
                },
                |headers| {
                    let request = ReceivedRequest::new("POST", URL, &headers, &body);
                    black_box(verifier.verify(&request).expect("verifies"))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A typical MCP task-status webhook (~730 bytes serialized), the one `adcp-webhook bench`
/// sends too.
fn mcp_webhook(i: usize) -> McpWebhook {
    adcp_webhooks::sample::mcp_task_webhook(i, "")
}

fn payload(c: &mut Criterion) {
    let mut group = c.benchmark_group("payload");
    let webhook = mcp_webhook(7);
    let size = PreparedWebhook::new(URL, &webhook)
        .expect("prepared")
        .body()
        .len();
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("mcp_prepare", |b| {
        b.iter(|| black_box(PreparedWebhook::new(URL, black_box(&webhook)).expect("prepared")))
    });
    group.finish();
}

/// The destination check `send_prepared` runs before signing: an IP literal, and a host name
/// whose verdict the resolver has cached. `block_on_ready` is the cost of driving an already
/// ready future, included in both.
fn destination(c: &mut Criterion) {
    use adcp_webhooks::destination::{DestinationPolicy, PolicyResolver};
    let mut group = c.benchmark_group("destination");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let resolver = PolicyResolver::new(
        DestinationPolicy::strict()
            .allow_http(true)
            .allow_private_destinations(true)
            .allowed_ports([]),
    );
    let literal = canonicalize_url("http://127.0.0.1:8080/hook").expect("url");
    let name = canonicalize_url("http://localhost:8080/hook").expect("url");
    rt.block_on(resolver.check(&name))
        .expect("localhost resolves");
    group.bench_function("block_on_ready", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }))
    });
    group.bench_function("check_literal", |b| {
        b.iter(|| black_box(rt.block_on(resolver.check(&literal)).expect("allowed")))
    });
    group.bench_function("check_cached_name", |b| {
        b.iter(|| black_box(rt.block_on(resolver.check(&name)).expect("allowed")))
    });
    group.finish();
}

fn config() -> Criterion {
    // Short windows: the machine is small and shared; criterion's statistics still apply.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = pipeline, backend, sender_sign, sha256, canonical, verify, payload, destination
}
criterion_main!(benches);
