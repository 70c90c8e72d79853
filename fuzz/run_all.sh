#!/usr/bin/env bash
# Run every fuzz target, one after another, for SECONDS_PER_TARGET seconds each (default 240),
# one job and one worker each (fuzzing is CPU-bound; running targets side by side only splits
# the same cores). Needs a nightly toolchain and cargo-fuzz:
#
#   rustup toolchain install nightly && cargo install cargo-fuzz
#   bash fuzz/run_all.sh            # or: SECONDS_PER_TARGET=60 bash fuzz/run_all.sh
#
# Seeds come from fuzz/seeds/<target> (python3 fuzz/make_seeds.py rebuilds them); the growing
# corpus goes to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>, and each run's
# libFuzzer log to fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs="${SECONDS_PER_TARGET:-240}"
targets=(canonical_url structured_fields jwk pem payload_parse verify_request)
if [[ $# -gt 0 ]]; then targets=("$@"); fi
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    extra=()
    case "$t" in
        structured_fields | verify_request) extra+=("-dict=dicts/rfc9421.dict") ;;
    esac
    case "$t" in
        verify_request) extra+=("-max_len=8192") ;;
    esac
    echo "== $t (${secs}s)"
    # cargo-fuzz's default sanitizer (address) needs nightly; `-s none` also works on stable
    # with RUSTC_BOOTSTRAP=1, at the cost of not catching memory errors in C code (aws-lc).
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -jobs=1 -workers=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${extra[@]}" >"logs/$t.out" 2>&1 || echo "   $t exited $?"
    # With -jobs, libFuzzer writes the worker's log to fuzz-0.log in the working directory.
    if [[ -f fuzz-0.log ]]; then mv fuzz-0.log "logs/$t.log"; fi
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|Done [0-9]+ runs|ERROR|SUMMARY" \
        "logs/$t.log" "logs/$t.out" 2>/dev/null | tail -6 || true
done
