//! `adcp-webhook`: keygen, sign, send, verify and a self-checking demo for signed AdCP webhooks.
//!
//! This file only parses the command line and dispatches; each subcommand lives in a module of
//! its own, and what they share is in [`common`].

mod cmd_bench;
mod cmd_challenge;
mod cmd_console;
mod cmd_jwks;
mod cmd_keygen;
mod cmd_keys;
mod cmd_outbox;
mod cmd_send;
mod cmd_sign;
mod cmd_verify;
mod common;
mod demo;
mod keyfile;
mod payload_args;
mod ring_file;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "adcp-webhook",
    version,
    about = "Signed AdCP webhooks: keygen, sign, send, verify, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a signing key: writes the private PEM (mode 0600), prints the public JWK.
    Keygen(cmd_keygen::KeygenArgs),
    /// Print the public key set {"keys":[...]} of the keys given (what a jwks_uri serves).
    Jwks(cmd_jwks::JwksArgs),
    /// Rotate keys in a key ring file (outbox run --key-ring): show, stage, switch, retire.
    Keys(cmd_keys::KeysArgs),
    /// Sign a webhook request without sending it; prints {"method","url","headers","body"}.
    Sign(cmd_sign::SignArgs),
    /// Build, sign and POST one webhook; prints the delivery result.
    Send(Box<cmd_send::SendArgs>),
    /// Send a signed destination challenge and check the echo; exit 0 only if it is right.
    Challenge(Box<cmd_challenge::ChallengeArgs>),
    /// Verify a signed request document {"method","url","headers","body"} read from stdin.
    Verify(cmd_verify::VerifyArgs),
    /// Run a verifying webhook receiver that logs one JSON line per request.
    Receive(cmd_verify::ReceiveArgs),
    /// The durable outbox: enqueue, run the delivery worker, inspect, requeue.
    Outbox(cmd_outbox::OutboxArgs),
    /// Run the whole flow against an in-process receiver that checks every signature.
    Demo,
    /// Serve the operator console (a web UI) over an outbox.
    Console(Box<cmd_console::ConsoleArgs>),
    /// Measure delivery throughput and latency against a receiver; prints one JSON line.
    Bench(cmd_bench::BenchArgs),
}

/// Print `msg` as the error and exit with 2 (usage or input errors).
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Keygen(a) => cmd_keygen::run(a),
            Command::Jwks(a) => cmd_jwks::run(a),
            Command::Keys(a) => cmd_keys::run(a),
            Command::Sign(a) => cmd_sign::run(a),
            Command::Send(a) => cmd_send::run(*a).await,
            Command::Challenge(a) => cmd_challenge::run(*a).await,
            Command::Verify(a) => cmd_verify::run_verify(a).map(|c| ExitCode::from(c as u8)),
            Command::Receive(a) => cmd_verify::run_receive(a).await.map(|()| ExitCode::SUCCESS),
            Command::Outbox(a) => cmd_outbox::run(a).await,
            Command::Demo => demo::run().await,
            Command::Bench(a) => cmd_bench::run(a).await,
            Command::Console(a) => cmd_console::run(*a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}
