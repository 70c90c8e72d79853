#!/usr/bin/env bash
# The durable outbox on SQLite and on PostgreSQL, back to back in one run, against a loopback
# nginx sink: enqueue rate, drain rate, enqueue-to-first-attempt latency at a fixed offered
# rate, and SQL round trips and server commits per delivery. Prints a markdown table of the
# medians and keeps the raw JSON lines.
#
#   bash bench/outbox.sh
#
# Needs nginx (installed from Debian's packages when missing and run as root), psql, and a
# PostgreSQL server where it may create databases: ADCP_BENCH_POSTGRES_URL, an admin URL
# (default: the dev server postgres://postgres@127.0.0.1:54330/postgres). Each PostgreSQL run
# gets a fresh database (adcp_outbox_bench_*), dropped right after it.
#
# The keep-up phase offers half the lower of the enqueue and drain rates measured in the same
# run (the bench's default), and one PostgreSQL configuration offers a fixed BENCH_PG_RATE.
#
# Knobs (environment): BENCH_RUNS (3), BENCH_N (10000 webhooks per throughput phase), BENCH_C
# (32 requests in flight per worker), BENCH_PORT (18082), BENCH_KEEP_UP_SECS (5),
# BENCH_PG_RATE (1000 webhooks/s), BENCH_SKIP_BUILD=1 to use the existing release binary,
# BENCH_CONFIGS (a space-separated subset of the configuration names below, default all),
# BENCH_BASE_BIN=PATH to also run every configuration with another build of adcp-webhook
# (labelled "[base]"), interleaved with this one, for a before/after comparison in one run.
#
# Every run starts with a direct signed send of the same webhooks to the same sink
# ("direct send"), so the outbox's rates are read as ratios against a baseline measured in
# the same run.
# Loopback only; not part of scripts/test.sh or CI: it measures, it does not test.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS="${BENCH_RUNS:-3}"
N="${BENCH_N:-10000}"
C="${BENCH_C:-32}"
PORT="${BENCH_PORT:-18082}"
KEEP_UP_SECS="${BENCH_KEEP_UP_SECS:-5}"
PG_RATE="${BENCH_PG_RATE:-1000}"
ADMIN_URL="${ADCP_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:54330/postgres}"
URL="http://127.0.0.1:${PORT}/adcp/webhook/op_bench"

WORK="$(mktemp -d /tmp/adcp-outbox-bench.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
echo "scratch directory: $WORK" >&2

note() { printf '\n==== %s ====\n' "$*" >&2; }

command -v psql >/dev/null 2>&1 || {
    echo "error: psql is needed to create the PostgreSQL databases; install postgresql-client" >&2
    exit 1
}
command -v python3 >/dev/null 2>&1 || {
    echo "error: python3 is needed to build the table" >&2
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

# The password-free form of a URL, for what the script prints.
masked() {
    python3 - "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
netloc = u.netloc
if u.password is not None:
    netloc = netloc.replace(":" + u.password + "@", ":***@", 1)
print(urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)))
PY
}

psql_admin() { psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -qAt "$@"; }

CREATED=()
drop_db() {
    psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true
}

# ---- the sink (the one bench/run.sh uses) ------------------------------------------------
# shellcheck source=bench/sink.sh
source bench/sink.sh
cleanup() {
    stop_sink
    for db in "${CREATED[@]}"; do drop_db "$db"; done
    rm -f "$WORK"/outbox*.db*
}
trap cleanup EXIT

# CPU seconds the PostgreSQL server on this host has used (live processes and reaped
# children); empty when the server runs elsewhere.
server_cpu() {
    python3 - <<'PY'
import os
hz = os.sysconf("SC_CLK_TCK")
procs = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    procs[int(pid)] = (comm, int(fields[1]), [int(x) for x in fields[11:15]])
total, seen = 0, False
for pid, (comm, ppid, (ut, st, cut, cst)) in procs.items():
    if comm != "postgres":
        continue
    seen = True
    total += ut + st
    if procs.get(ppid, ("",))[0] != "postgres":  # the postmaster: add its reaped backends
        total += cut + cst
print(f"{total / hz:.2f}" if seen else "")
PY
}

# Append one result line, tagged with its label and the server CPU it cost.
record() {
    local label="$1" cpu0="$2" cpu1="$3" line
    line="$(tail -n 1)"
    if [[ "$line" != \{* ]]; then
        echo "warning: $label printed no result" >&2
        return 0
    fi
    local cpu=null
    if [[ -n "$cpu0" && -n "$cpu1" ]]; then
        cpu="$(python3 -c "print(round($cpu1 - $cpu0, 2))")"
    fi
    printf '{"label":"%s","server_cpu_s":%s,"result":%s}\n' "$label" "$cpu" "$line" >>"$RESULTS"
    echo "$label: $line" >&2
}

# ---- runs ----------------------------------------------------------------------------------
ensure_nginx
note "starting the nginx sink on 127.0.0.1:$PORT"
start_sink

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    note "building adcp-webhook (release)"
    cargo build --release -p adcp-webhook-cli
fi
BIN="$ROOT/target/release/adcp-webhook"

PG_VERSION="$(psql_admin -c 'SHOW server_version')"
note "PostgreSQL $PG_VERSION at $(masked "$ADMIN_URL")"

run_sqlite() { # bin, label, then bench flags
    local bin="$1" label="$2" db="$WORK/outbox-$RANDOM$RANDOM.db"
    shift 2
    "$bin" bench --url "$URL" -n "$N" -c "$C" --allow-http --allow-private-destinations \
        --keep-up-secs "$KEEP_UP_SECS" --outbox "sqlite:$db" "$@" >"$WORK/line.json" ||
        echo "warning: $label exited with status $? (the line records what failed)" >&2
    record "$label" "" "" <"$WORK/line.json"
    rm -f "$db" "$db-wal" "$db-shm"
}

run_postgres() { # bin, label, then bench flags
    local bin="$1" label="$2" name="adcp_outbox_bench_$$_$RANDOM$RANDOM" cpu0 cpu1
    shift 2
    psql_admin -c "CREATE DATABASE $name" >/dev/null
    CREATED+=("$name")
    cpu0="$(server_cpu)"
    "$bin" bench --url "$URL" -n "$N" -c "$C" --allow-http --allow-private-destinations \
        --keep-up-secs "$KEEP_UP_SECS" --outbox "$(db_url "$name")" --outbox-migrate "$@" \
        >"$WORK/line.json" ||
        echo "warning: $label exited with status $? (the line records what failed)" >&2
    cpu1="$(server_cpu)"
    record "$label" "$cpu0" "$cpu1" <"$WORK/line.json"
    drop_db "$name"
}

run_direct() { # bin, label
    "$1" bench --url "$URL" -n "$N" -c "$C" --allow-http --allow-private-destinations \
        >"$WORK/line.json" || echo "warning: $2 exited with status $?" >&2
    record "$2" "" "" <"$WORK/line.json"
}

# name|engine|label|flags
CONFIGS=(
    "sqlite-1|sqlite|sqlite, 1 per enqueue, 1 worker|--enqueue-batch 1"
    "sqlite-1x8|sqlite|sqlite, 1 per enqueue, 8 enqueuers, 1 worker|--enqueue-batch 1 --enqueuers 8"
    "sqlite-100|sqlite|sqlite, 100 per enqueue, 1 worker|--enqueue-batch 100"
    "postgres-1|postgres|postgres, 1 per enqueue, 1 worker|--enqueue-batch 1"
    "postgres-1x8|postgres|postgres, 1 per enqueue, 8 enqueuers, 1 worker|--enqueue-batch 1 --enqueuers 8"
    "postgres-100|postgres|postgres, 100 per enqueue, 1 worker|--enqueue-batch 100"
    "postgres-100-rate|postgres|postgres, 100 per enqueue, 1 worker, $PG_RATE/s|--enqueue-batch 100 --rate $PG_RATE"
    "postgres-100x2|postgres|postgres, 100 per enqueue, 2 workers|--enqueue-batch 100 --workers 2"
)
WANTED="${BENCH_CONFIGS:-}"
BINS=("$BIN")
[[ -n "${BENCH_BASE_BIN:-}" ]] && BINS+=("$BENCH_BASE_BIN")
tag() { [[ "$1" == "$BIN" ]] && echo "" || echo " [base]"; }

note "SQLite and PostgreSQL, $RUNS runs each, interleaved"
for i in $(seq "$RUNS"); do
    echo "-- run $i of $RUNS" >&2
    for bin in "${BINS[@]}"; do
        run_direct "$bin" "direct send$(tag "$bin")"
    done
    for entry in "${CONFIGS[@]}"; do
        IFS='|' read -r name engine label flags <<<"$entry"
        if [[ -n "$WANTED" && " $WANTED " != *" $name "* ]]; then
            continue
        fi
        for bin in "${BINS[@]}"; do
            # shellcheck disable=SC2086 # flags are words
            "run_$engine" "$bin" "$label$(tag "$bin")" $flags
        done
    done
done

cleanup
trap - EXIT

cp "$RESULTS" bench/last-outbox-results.jsonl
LOAD="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)"
python3 bench/outbox_report.py "$RESULTS" \
    --date "$(date -u +%Y-%m-%d)" \
    --machine "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs), $(nproc) cores, $(uname -sr)" \
    --postgres "PostgreSQL $PG_VERSION" \
    --load "$LOAD" \
    --command "bash bench/outbox.sh  (BENCH_RUNS=$RUNS BENCH_N=$N BENCH_C=$C BENCH_KEEP_UP_SECS=$KEEP_UP_SECS BENCH_PG_RATE=$PG_RATE)"
echo "raw results: bench/last-outbox-results.jsonl" >&2
