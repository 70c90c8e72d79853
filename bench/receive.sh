#!/usr/bin/env bash
# Verified webhooks per second through `adcp-webhook receive`, beside the official Python SDK's
# receiver, in one run on one machine: build the release CLI, start a loopback nginx sink (the
# --forward application), then run the matrix interleaved BENCH_RUNS times, each receiver
# driven by the same `adcp-webhook bench` command (same n, c and signing key):
#
#   rust memory              receive, in-memory store
#   rust postgres            receive --store postgres://… (a fresh database per run)
#   rust memory forward      receive --forward http://127.0.0.1:SINK/…
#   rust postgres forward    receive --store postgres://… --forward …
#   python sdk memory        bench/py_receiver.py (WebhookReceiver, MemoryBackend dedup)
#
# Every run must be accepted in full: the bench's failed count 0, and the receiver's own count
# of accepted webhooks equal to n (receive's log lines; the Python receiver's counters). A
# PostgreSQL run also records the server's commits (pg_stat_database.xact_commit of its
# database) per webhook. Writes the table of medians into BENCHMARKS.md between the
# receive:start / receive:end markers and keeps the raw JSON lines in
# bench/last-receive-results.jsonl.
#
#   bash bench/receive.sh
#
# Needs nginx, psql, and a PostgreSQL server where it may create databases:
# ADCP_BENCH_POSTGRES_URL, an admin URL (default postgres://postgres@127.0.0.1:54329/postgres);
# each PostgreSQL run gets a database adcp_receive_bench_*, dropped right after it. The Python
# side needs a Python with adcp, starlette and uvicorn (ADCP_PYTHON, default .venv/bin/python).
# Knobs (environment): BENCH_RUNS (3), BENCH_N (10000), BENCH_C (32), BENCH_PORT (18083, the
# sink), BENCH_SKIP_BUILD=1 to use the existing release binary.
# Loopback only; not part of scripts/test.sh or CI: it measures, it does not test.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS="${BENCH_RUNS:-3}"
N="${BENCH_N:-10000}"
C="${BENCH_C:-32}"
PORT="${BENCH_PORT:-18083}"
ADMIN_URL="${ADCP_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:54329/postgres}"
PY="${ADCP_PYTHON:-$ROOT/.venv/bin/python}"
URL="http://127.0.0.1:${PORT}/adcp/webhook/op_bench"
HOOK_PATH="/adcp/webhook/op_bench"

WORK="$(mktemp -d /tmp/adcp-receive-bench.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
echo "scratch directory: $WORK" >&2

note() { printf '\n==== %s ====\n' "$*" >&2; }

command -v psql >/dev/null 2>&1 || {
    echo "error: psql is needed to create the PostgreSQL databases; install postgresql-client" >&2
    exit 1
}
"$PY" -c 'import adcp.webhook_receiver, starlette, uvicorn' >/dev/null 2>&1 || {
    echo "error: $PY cannot import adcp, starlette and uvicorn; set ADCP_PYTHON" >&2
    exit 1
}

# The admin URL with its database replaced (query parameters kept).
db_url() {
    python3 - "$ADMIN_URL" "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
PY
}
psql_admin() { psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -qAt "$@"; }
# utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
commits_of() { psql_admin -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'"; }

# ---- cleanup: the receiver we started, the sink, the databases ---------------------------------
RECEIVER_PID=""
CREATED=()
stop_receiver() {
    if [[ -n "$RECEIVER_PID" ]]; then
        kill "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
        RECEIVER_PID=""
    fi
}
drop_db() { psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true; }
# shellcheck source=bench/sink.sh
source bench/sink.sh
cleanup() {
    stop_receiver
    stop_sink
    for db in "${CREATED[@]}"; do drop_db "$db"; done
}
trap cleanup EXIT

ensure_nginx
note "starting the nginx sink on 127.0.0.1:$PORT"
start_sink

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    note "building adcp-webhook (release)"
    cargo build --release -p adcp-webhook-cli
fi
BIN="$ROOT/target/release/adcp-webhook"

note "one signing key for every run"
"$BIN" keygen --kid bench-receive --out "$WORK/key.pem" --jwks "$WORK/key.jwks.json" >/dev/null

# Start a receiver in the background (its stderr in $WORK/receiver.err) and set RECV_URL once it
# printed `listening on http://ADDR`.
start_receiver() {
    : >"$WORK/receiver.err"
    "$@" 2>"$WORK/receiver.err" &
    RECEIVER_PID=$!
    local addr=""
    for _ in $(seq 1800); do # up to 3 minutes: importing the Python SDK is slow
        addr="$(sed -n 's#.*listening on http://\([0-9.:]*\).*#\1#p' "$WORK/receiver.err" | head -n 1)"
        [[ -n "$addr" ]] && break
        if ! kill -0 "$RECEIVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if [[ -z "$addr" ]]; then
        echo "error: the receiver did not start:" >&2
        cat "$WORK/receiver.err" >&2
        exit 1
    fi
    RECV_URL="http://$addr$HOOK_PATH"
}

BENCH=(-n "$N" -c "$C" --allow-http --allow-private-destinations --key "$WORK/key.pem" --kid bench-receive)
BENCH_CMD="adcp-webhook bench --url http://127.0.0.1:PORT$HOOK_PATH ${BENCH[*]}"
BENCH_CMD="${BENCH_CMD//$WORK\//}"

# Drive the receiver started last; append {"label","result","accepted","commits"} to RESULTS.
# $2: how to count accepted webhooks afterwards ("log:FILE" or "py:URL"); $3: the PostgreSQL
# database whose commits count, if any.
drive() {
    local label="$1" count="$2" db="${3:-}" commits0="" commits1="" accepted status=0
    [[ -n "$db" ]] && commits0="$(commits_of "$db")"
    local cpu0 cpu1
    cpu0="$(cpu_ticks "$RECEIVER_PID")"
    "$BIN" bench --url "$RECV_URL" "${BENCH[@]}" >"$WORK/line.json" 2>"$WORK/bench.err" || status=$?
    case "$count" in
    log:*) accepted="$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if (r := json.loads(l)).get("outcome") == "accepted" and r.get("status") == 200))' "${count#log:}")" ;;
    py:*) accepted="$(curl -fsS "${count#py:}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])')" ;;
    esac
    cpu1="$(cpu_ticks "$RECEIVER_PID")"
    stop_receiver
    # The receiver's connections are closed once it stopped, so every commit has been counted.
    [[ -n "$db" ]] && commits1="$(commits_of "$db")"
    local line
    line="$(tail -n 1 "$WORK/line.json")"
    if [[ "$line" != \{* ]]; then
        echo "error: $label: the bench printed no result (status $status):" >&2
        cat "$WORK/bench.err" >&2
        exit 1
    fi
    local commits=null
    [[ -n "$db" ]] && commits=$((commits1 - commits0))
    local cpu_us
    cpu_us="$(python3 -c 'import os,sys; print(round((int(sys.argv[2]) - int(sys.argv[1])) * 1e6 / os.sysconf("SC_CLK_TCK") / int(sys.argv[3]), 1))' "$cpu0" "$cpu1" "$N")"
    printf '{"label":"%s","accepted":%s,"commits":%s,"receiver_cpu_us_per_webhook":%s,"result":%s}\n' \
        "$label" "$accepted" "$commits" "$cpu_us" "$line" >>"$RESULTS"
    echo "$label: accepted $accepted, commits $commits, receiver CPU $cpu_us us/webhook: $line" >&2
    if [[ "$status" != 0 || "$accepted" != "$N" ]]; then
        echo "error: $label: not every webhook was accepted (bench status $status, receiver accepted $accepted of $N)" >&2
        head -n 5 "$WORK/receiver.err" >&2
        exit 1
    fi
}

# One run of ours: $1 label, $2 "memory" or "postgres", $3 "" or "forward".
run_ours() {
    local label="$1" store="$2" fwd="$3" db="" args=()
    local log="$WORK/receive.log"
    : >"$log"
    if [[ "$store" == postgres ]]; then
        db="adcp_receive_bench_$$_$RANDOM"
        psql_admin -c "CREATE DATABASE $db" >/dev/null
        CREATED+=("$db")
        args+=(--store "$(db_url "$db")")
    fi
    [[ "$fwd" == forward ]] && args+=(--forward "$URL")
    start_receiver "$BIN" receive --jwks "$WORK/key.jwks.json" --listen 127.0.0.1:0 --log "$log" "${args[@]}"
    drive "$label" "log:$log" "$db"
    if [[ -n "$db" ]]; then drop_db "$db"; fi
    rm -f "$log"
}

run_python() {
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    start_receiver "$PY" bench/py_receiver.py --jwks "$WORK/key.jwks.json" --listen "127.0.0.1:$port"
    drive "python sdk memory" "py:http://127.0.0.1:$port/_stats"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
note "the matrix: $RUNS runs each, interleaved (n=$N, c=$C)"
for i in $(seq "$RUNS"); do
    note "round $i of $RUNS"
    run_ours "rust memory" memory ""
    run_python
    run_ours "rust postgres" postgres ""
    run_ours "rust memory forward" memory forward
    run_ours "rust postgres forward" postgres forward
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

stop_sink
trap - EXIT
cleanup

note "writing BENCHMARKS.md"
PY_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("adcp"))')"
PG_VERSION="$(psql_admin -c 'SHOW server_version')"
python3 bench/receive_report.py "$RESULTS" BENCHMARKS.md \
    --bench-cmd "$BENCH_CMD" --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" \
    --cores "$(nproc)" --python-sdk "$PY_VERSION" --postgres "$PG_VERSION"
cp "$RESULTS" bench/last-receive-results.jsonl
rm -rf "$WORK"
echo "raw results: bench/last-receive-results.jsonl" >&2
