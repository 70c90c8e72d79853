#!/usr/bin/env bash
# One run of the whole benchmark: start a loopback nginx sink, build in release, run our sender
# (signed and unsigned, interleaved, BENCH_RUNS times each), the official Python and JS SDK
# senders when they can be installed, the signing-overhead bench, and write the table of
# medians into BENCHMARKS.md.
#
#   bash bench/run.sh
#
# Loopback only. Takes 10-20 minutes on 2 cores (the release build alone takes several).
# Knobs (environment): BENCH_RUNS (3), BENCH_N (10000), BENCH_C (32), BENCH_PORT (18080),
# BENCH_PY_POOLED_N (2000), BENCH_PY_DEFAULT_N (300), BENCH_JS_N (5000),
# BENCH_SDKS=0 to skip the SDKs, BENCH_CRITERION=1 to also run every criterion bench,
# ADCP_JS_DIR to reuse a directory where `npm install @adcp/sdk@6.11` ran.
# Not part of scripts/test.sh or CI: it measures, it does not test.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS="${BENCH_RUNS:-3}"
N="${BENCH_N:-10000}"
C="${BENCH_C:-32}"
PORT="${BENCH_PORT:-18080}"
PY_POOLED_N="${BENCH_PY_POOLED_N:-2000}"
PY_DEFAULT_N="${BENCH_PY_DEFAULT_N:-300}"
JS_N="${BENCH_JS_N:-5000}"
URL="http://127.0.0.1:${PORT}/adcp/webhook/op_bench"

WORK="$(mktemp -d /tmp/adcp-bench.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
echo "scratch directory: $WORK"

note() { printf '\n==== %s ====\n' "$*" >&2; }

# ---- the sink --------------------------------------------------------------------------
# shellcheck source=bench/sink.sh
source bench/sink.sh
trap stop_sink EXIT

# Append one result line, tagged with its label.
record() {
    local label="$1" line
    line="$(tail -n 1)"
    if [[ "$line" != \{* ]]; then
        echo "warning: $label printed no result" >&2
        return 0
    fi
    printf '{"label":"%s","result":%s}\n' "$label" "$line" >>"$RESULTS"
    echo "$label: $line" >&2
}

ensure_nginx
note "starting the nginx sink on 127.0.0.1:$PORT"
start_sink

if command -v wrk >/dev/null 2>&1; then
    note "raw sink limit (wrk, unsigned empty POST, 32 connections, 5 s)"
    wrk -t1 -c"$C" -d5s -s <(printf 'wrk.method="POST"\nwrk.body="{}"\n') "$URL" | tee "$WORK/wrk.txt" >&2 || true
fi

# ---- ours --------------------------------------------------------------------------------
note "building adcp-webhook (release)"
cargo build --release -p adcp-webhook-cli
BIN="$ROOT/target/release/adcp-webhook"
BENCH=("$BIN" bench --url "$URL" -n "$N" -c "$C" --allow-http --allow-private-destinations)

note "our sender: $RUNS runs each, interleaved"
for i in $(seq "$RUNS"); do
    "${BENCH[@]}" --alg ed25519 | record "rust signed ed25519"
    "${BENCH[@]}" --unsigned | record "rust unsigned"
    "${BENCH[@]}" --alg es256 | record "rust signed es256"
    rm -f "$WORK/outbox.db" "$WORK/outbox.db-wal" "$WORK/outbox.db-shm"
    "${BENCH[@]}" --alg ed25519 --outbox "sqlite:$WORK/outbox.db" | record "rust outbox ed25519"
    rm -f "$WORK/outbox-b.db" "$WORK/outbox-b.db-wal" "$WORK/outbox-b.db-shm"
    "${BENCH[@]}" --alg ed25519 --outbox "sqlite:$WORK/outbox-b.db" --enqueue-batch 100 |
        record "rust outbox ed25519 batch100"
done

# ---- the official SDKs ---------------------------------------------------------------------
if [[ "${BENCH_SDKS:-1}" != 0 ]]; then
    PY="${ADCP_PYTHON:-$ROOT/.venv/bin/python}"
    if [[ -x "$PY" ]] && "$PY" -c 'import adcp.webhook_sender, httpx' >/dev/null 2>&1; then
        note "Python SDK ($("$PY" -c 'import importlib.metadata as m; print(m.version("adcp"))'))"
        for i in $(seq "$RUNS"); do
            "$PY" bench/py_sender.py --url "$URL" -n "$PY_POOLED_N" -c "$C" --transport pooled |
                record "python pooled ed25519"
            "$PY" bench/py_sender.py --url "$URL" -n "$PY_DEFAULT_N" -c "$C" --transport default |
                record "python default ed25519"
        done
    else
        echo "note: no Python with adcp installed ($PY); run scripts/test.sh once to create .venv" >&2
    fi

    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        JS_DIR="${ADCP_JS_DIR:-$WORK/js}"
        if [[ ! -d "$JS_DIR/node_modules/@adcp/sdk" ]]; then
            note "installing @adcp/sdk@6.11 into $JS_DIR"
            mkdir -p "$JS_DIR"
            (cd "$JS_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund @adcp/sdk@6.11 >/dev/null) ||
                echo "note: npm install @adcp/sdk@6.11 failed; skipping the JS SDK" >&2
        fi
        if [[ -d "$JS_DIR/node_modules/@adcp/sdk" ]]; then
            note "JS SDK"
            for i in $(seq "$RUNS"); do
                ADCP_JS_DIR="$JS_DIR" node bench/js_sender.mjs --url "$URL" -n "$JS_N" -c "$C" |
                    record "js signed ed25519"
            done
        fi
    else
        echo "note: node/npm not found; skipping the JS SDK" >&2
    fi
fi

stop_sink
trap - EXIT
rm -f "$WORK"/outbox*.db*

# ---- the signing pipeline beside the bare primitive ----------------------------------------
# Alternating blocks of the two, median of per-pair ratios (benches/overhead.rs): robust to load
# that comes and goes, unlike two criterion benches measured one after the other.
note "signing pipeline vs bare primitive (benches/overhead.rs)"
cargo bench -p adcp-webhooks --bench overhead | grep '^{' | tee "$WORK/overhead.jsonl" >&2
if [[ "${BENCH_CRITERION:-0}" != 0 ]]; then
    note "criterion: every bench (benches/signing.rs)"
    cargo bench -p adcp-webhooks --bench signing | tee bench/last-criterion.txt >&2
fi

note "writing BENCHMARKS.md"
python3 bench/report.py "$RESULTS" BENCHMARKS.md "$WORK/overhead.jsonl" "$WORK/wrk.txt"
cp "$RESULTS" bench/last-results.jsonl
echo "raw results: bench/last-results.jsonl"
