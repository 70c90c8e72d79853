#!/usr/bin/env bash
# The one command that runs every test of the workspace on a fresh machine:
#
#   bash scripts/test.sh
#
# It needs the Rust toolchain (cargo, rustfmt, clippy, cargo-nextest), Python 3.10+
# with venv/pip, and the package registries (crates.io, PyPI). CI runs it through
# .ci/run. Each step below is one function listed in `main`; to add a step (for
# example installing and starting a database server on loopback before the tests),
# write a function and list it in `main` before the step that needs it.
#
# PostgreSQL tests (the outbox's PostgreSQL store and the multi-worker tests) find their
# server through ADCP_TEST_POSTGRES_URL, an admin URL; each test creates and drops a database
# of its own. This script starts a server on loopback and exports it (see start_postgres);
# without it those tests fail, saying so. The library's PostgreSQL store is behind its
# `postgres` feature, off by default: the test step names it (TEST_FEATURES), and a test build
# without it fails its outbox tests with a message saying so, rather than skipping them.
#
# Interop tests: the Rust integration tests under crates/*/tests that compare us
# with the official AdCP Python SDK spawn `$ADCP_PYTHON tests/interop/<script>.py`
# (see tests/interop/README.md). This script creates .venv/ with the pinned SDK and
# exports ADCP_PYTHON. Without ADCP_PYTHON (and no .venv/) those tests are counted as
# skipped, with a SKIPPED line on stderr, when run by hand; they FAIL when CI is set,
# and this script exports CI=1, so it can never pass without actually running them. To
# run them by hand:
#   export ADCP_PYTHON="$PWD/.venv/bin/python"   # after one run of this script
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# Keep in step with tests/interop/requirements.txt.
readonly ADCP_SDK_VERSION="9.2.0"
readonly VENV_DIR="$REPO_ROOT/.venv"
readonly PY_REQUIREMENTS="$REPO_ROOT/tests/interop/requirements.txt"
# Records which requirements file the venv was built from, so an edited pin list
# triggers a reinstall while an unchanged one costs nothing.
readonly VENV_STAMP="$VENV_DIR/.interop-requirements.sha256"
# Library features the tests need that are off by default (the PostgreSQL outbox store, the
# PKCS#11 signer).
readonly TEST_FEATURES="adcp-webhooks/postgres,adcp-webhooks/pkcs11"

# Tests that need an outside resource (the Python SDK) fail without it instead of skipping.
export CI=1

section() {
    printf '\n==== %s ====\n' "$*"
}

# Runs one named step under a header. Nothing is printed after a step, so the
# last step's own closing lines (the test summary) end the output.
step() {
    local name="$1"
    shift
    section "$name (at ${SECONDS}s)"
    "$@"
}

find_python() {
    local candidate
    for candidate in python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: no Python 3.10+ found (tried python3.11, python3, python); install one" >&2
    return 1
}

venv_is_current() {
    [[ -x "$VENV_DIR/bin/python" ]] || return 1
    [[ -f "$VENV_STAMP" ]] || return 1
    [[ "$(cat "$VENV_STAMP")" == "$(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)" ]] || return 1
    # `import adcp` alone is cheap (the heavy SDK modules load lazily).
    "$VENV_DIR/bin/python" -c "import sys, adcp; sys.exit(0 if adcp.__version__ == '$ADCP_SDK_VERSION' else 1)" \
        >/dev/null 2>&1
}

setup_python() {
    if venv_is_current; then
        echo "reusing $VENV_DIR (adcp $ADCP_SDK_VERSION already installed)"
    else
        local python
        python="$(find_python)"
        echo "creating $VENV_DIR with $python ($("$python" --version 2>&1))"
        # --clear: a venv copied from another machine or a half-finished install
        # is rebuilt rather than patched.
        "$python" -m venv --clear "$VENV_DIR"
        "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input -r "$PY_REQUIREMENTS"
        sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1 >"$VENV_STAMP"
        if ! venv_is_current; then
            echo "error: $VENV_DIR does not provide adcp $ADCP_SDK_VERSION after install;" \
                "check ADCP_SDK_VERSION against $PY_REQUIREMENTS" >&2
            return 1
        fi
    fi
    export ADCP_PYTHON="$VENV_DIR/bin/python"
    echo "ADCP_PYTHON=$ADCP_PYTHON"
}

# PostgreSQL for the outbox tests: a throwaway cluster of our own on loopback, never the
# machine's default one. Installed from the Debian packages when missing (needs root and
# apt), initialised under $PG_DIR with trust authentication on 127.0.0.1 only, started on the
# first free port from 54329, and left running so the next run reuses it (it is found again
# through its data directory; `pg_ctl -D "$PG_DIR/data" stop` stops it). The server refuses
# to run as root, so as root it runs as the `postgres` system user.
# As root the directory stays in /tmp: the postgres user must be able to reach it.
PG_DIR="$(if [[ "$(id -u)" == 0 ]]; then echo /tmp; else echo "${TMPDIR:-/tmp}"; fi)"
PG_DIR="$PG_DIR/adcp-webhooks-test-pg-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-10)"
readonly PG_DIR

pg_bin_dir() {
    local dir
    # The newest major version installed (an unmatched glob stays literal and fails -x).
    dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    [[ -n "$dir" && -x "$dir/postgres" ]] && printf '%s\n' "$dir"
}

install_postgres() {
    if pg_bin_dir >/dev/null; then
        return 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "error: PostgreSQL is not installed and this is not root with apt-get;" \
            "install the postgresql package, then rerun" >&2
        return 1
    fi
    echo "installing PostgreSQL from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends postgresql >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends postgresql >/dev/null
    fi
    pg_bin_dir >/dev/null || {
        echo "error: the postgresql package installed no server binary" >&2
        return 1
    }
}

# SoftHSM2 for the PKCS#11 tests: the Debian package, installed when missing (needs root and
# apt). The tests make their own tokens in temporary directories (SOFTHSM2_CONF), so nothing
# else is set up here; with CI set they fail if it is absent.
softhsm_module() {
    local m
    for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
        [[ -f "$m" ]] && { printf '%s\n' "$m"; return 0; }
    done
    return 1
}

install_softhsm() {
    if command -v softhsm2-util >/dev/null 2>&1 && softhsm_module >/dev/null; then
        echo "SoftHSM2: $(softhsm2-util --version) ($(softhsm_module))"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "error: SoftHSM2 is not installed and this is not root with apt-get;" \
            "install the softhsm2 package, then rerun" >&2
        return 1
    fi
    echo "installing SoftHSM2 from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends softhsm2 >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends softhsm2 >/dev/null
    fi
    softhsm_module >/dev/null || {
        echo "error: the softhsm2 package installed no libsofthsm2.so" >&2
        return 1
    }
    echo "SoftHSM2: $(softhsm2-util --version) ($(softhsm_module))"
}

# Runs a PostgreSQL program as the user that owns the cluster.
as_pg_user() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The port our cluster in $PG_DIR is serving on, when it is running (pg_ctl status checks the
# postmaster's pid, so a stale postmaster.pid after a reboot does not count).
running_pg_port() {
    local bin="$1"
    as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1 || return 1
    # Line 4 of postmaster.pid is the port the server listens on.
    as_pg_user sed -n 4p "$PG_DIR/data/postmaster.pid"
}

# The operator console's browser tests drive Debian's headless Chromium through its
# chromedriver (crates/adcp-webhooks/tests/console_browser.rs); under CI=1 they fail without
# them. Installed once; nothing is downloaded at test time.
install_chromium() {
    if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
        echo "chromium and chromedriver are installed"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "error: chromium and chromedriver are not installed and this is not root with" \
            "apt-get; install the chromium and chromium-driver packages, then rerun" >&2
        return 1
    fi
    echo "installing Chromium and its driver from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
    fi
}

start_postgres() {
    install_postgres
    local bin port major
    bin="$(pg_bin_dir)"
    major="$(basename "$(dirname "$bin")")"
    if port="$(running_pg_port "$bin")" && [[ -n "$port" ]]; then
        echo "reusing the test PostgreSQL server in $PG_DIR"
    else
        # A cluster made by another major version (the package was upgraded) cannot be
        # started by this one; it holds nothing worth keeping.
        if [[ "$(cat "$PG_DIR/data/PG_VERSION" 2>/dev/null)" != "$major" ]]; then
            rm -rf "$PG_DIR"
            mkdir -p "$PG_DIR"
            if [[ "$(id -u)" == 0 ]]; then
                chown postgres:postgres "$PG_DIR"
            fi
            # --no-sync only skips flushing initdb's own files; the server keeps fsync on.
            as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
        fi
        # Ports already taken (by another server, or anything else) are skipped.
        port=54329
        while port_in_use "$port"; do
            port=$((port + 1))
            if ((port > 54429)); then
                echo "error: no free port in 54329-54429 for the test PostgreSQL server" >&2
                return 1
            fi
        done
        as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=300" start >/dev/null || {
            echo "error: the test PostgreSQL server did not start; its log:" >&2
            tail -n 30 "$PG_DIR/server.log" >&2 || true
            return 1
        }
    fi
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30; then
        echo "error: the test PostgreSQL server in $PG_DIR does not accept connections on" \
            "127.0.0.1:$port; see $PG_DIR/server.log" >&2
        return 1
    fi
    export ADCP_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    export ADCP_BENCH_POSTGRES_URL="$ADCP_TEST_POSTGRES_URL"
    echo "ADCP_TEST_POSTGRES_URL=$ADCP_TEST_POSTGRES_URL ($("$bin/postgres" --version))"
}

check_fmt() {
    cargo fmt --all -- --check
}

# Warns, without failing, when Cargo.lock lags behind a Cargo.toml change: cargo then
# resolves the missing entries itself for this run, but the lock should be committed.
check_lockfile() {
    if ! cargo metadata --locked --format-version 1 >/dev/null 2>&1; then
        echo "warning: Cargo.lock is out of date with Cargo.toml; run cargo and commit Cargo.lock"
    else
        echo "Cargo.lock is up to date"
    fi
}

check_clippy() {
    cargo clippy --workspace --all-targets --features "$TEST_FEATURES" -- -D warnings
}

# The API docs build without a warning (broken intra-doc links, stray HTML, undocumented
# public items of the library).
check_docs() {
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --features "$TEST_FEATURES"
}

run_doctests() {
    # nextest does not run doctests.
    cargo test --workspace --doc --features "$TEST_FEATURES"
}

# The pure core: with no default features the library (payloads, prepared webhooks, keys,
# signing, verification) depends on no HTTP client, no async runtime and no SQL driver, is
# clippy-clean, and passes its tests (the AdCP conformance vectors among them) in that
# configuration.
check_pure_core() {
    local forbidden
    forbidden="$(cargo tree -p adcp-webhooks --no-default-features -e normal --prefix none |
        awk '{print $1}' | sort -u |
        grep -E '^(reqwest|hyper|hyper-util|tokio|sqlx|sqlx-core|rustls|axum|tower|h2)$' || true)"
    if [[ -n "$forbidden" ]]; then
        echo "error: adcp-webhooks --no-default-features depends on: $forbidden" >&2
        return 1
    fi
    echo "no HTTP client, runtime or SQL crate in the pure core's dependency tree"
    cargo clippy -p adcp-webhooks --no-default-features --all-targets -- -D warnings
    # Every test the pure core offers (tests that need sending or the outbox declare
    # required-features and are left out), except the Python interop run, which the full
    # suite makes.
    cargo nextest run -p adcp-webhooks --no-default-features --no-tests=fail \
        -E 'not binary(interop_python)'
}

run_tests() {
    # Debug profile on purpose: a release build of this tree costs minutes on 2 cores.
    # Runs last so its summary line closes the output.
    cargo nextest run --workspace --features "$TEST_FEATURES" --no-fail-fast --no-tests=fail
}

main() {
    step "Python interop environment (adcp $ADCP_SDK_VERSION)" setup_python
    step "PostgreSQL on loopback" start_postgres
    step "Chromium for the console's browser tests" install_chromium
    step "SoftHSM2 (PKCS#11 tests)" install_softhsm
    step "Cargo.lock" check_lockfile
    step "cargo fmt --check" check_fmt
    step "cargo clippy -D warnings" check_clippy
    step "cargo doc -D warnings" check_docs
    step "pure core (--no-default-features)" check_pure_core
    step "doctests" run_doctests
    step "tests (cargo nextest)" run_tests
}

main "$@"
