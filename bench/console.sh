#!/usr/bin/env bash
# The operator console's deliveries page over 1,000,000 deliveries on SQLite and PostgreSQL
# (crates/adcp-webhooks/benches/console_pages.rs): seeds each engine with one bulk SQL insert,
# serves the console on loopback and times the page's GETs, engines and pages interleaved.
# Needs ADCP_TEST_POSTGRES_URL (an admin URL; `bash scripts/test.sh` starts a server and
# prints it). Raw lines go to bench/last-console-results.jsonl. Not part of the tests.
#
#   CONSOLE_BENCH_ROWS=1000000 CONSOLE_BENCH_ROUNDS=15 bash bench/console.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${ADCP_TEST_POSTGRES_URL:?set ADCP_TEST_POSTGRES_URL to a PostgreSQL admin URL}"
cargo bench -p adcp-webhooks --features console,postgres --bench console_pages \
    | tee bench/last-console-results.jsonl
