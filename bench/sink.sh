# The loopback nginx sink shared by bench/run.sh and bench/outbox.sh (sourced, not run).
# Expects WORK (a scratch directory), PORT, URL and a `note` function; defines SINK_DIR,
# ensure_nginx, start_sink and stop_sink.

SINK_DIR="$WORK/sink"

ensure_nginx() {
    command -v nginx >/dev/null 2>&1 && return 0
    PATH="$PATH:/usr/sbin"
    command -v nginx >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        note "installing nginx-light (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    fi
    command -v nginx >/dev/null 2>&1 || {
        echo "error: nginx is not installed and could not be installed; install nginx" >&2
        exit 1
    }
}

stop_sink() {
    if [[ -f "$SINK_DIR/nginx.pid" ]]; then
        nginx -c "$SINK_DIR/nginx.conf" -p "$SINK_DIR" -s stop 2>/dev/null || true
    fi
}

start_sink() {
    mkdir -p "$SINK_DIR"
    sed -e "s#@DIR@#$SINK_DIR#g" -e "s#@PORT@#$PORT#g" bench/nginx.conf.in >"$SINK_DIR/nginx.conf"
    nginx -c "$SINK_DIR/nginx.conf" -p "$SINK_DIR"
    for _ in $(seq 50); do
        if command -v curl >/dev/null 2>&1; then
            curl -fsS -X POST -d '{}' "$URL" >/dev/null 2>&1 && return 0
        else
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    echo "error: the nginx sink did not answer on $URL (is port $PORT taken? set BENCH_PORT)" >&2
    exit 1
}
