#!/usr/bin/env bash
# API benchmark: the framework floor (GET /healthz) against a product read
# (GET /v1/products/{id}) on SQLite and on PostgreSQL, with nginx answering a fixed
# JSON body as an outside peer for the floor. Load comes from wrk in a second process.
#
#   bench/api.sh                 # defaults: 2 wrk threads, 64 connections, 10 s per run
#   DURATION=30s CONNECTIONS=128 bench/api.sh
#
# Prints a Markdown table; paste it into docs/performance.md with the machine line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
WORK=$(mktemp -d)
SERVER_PID=""
NGINX_PID=""

cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 from Debian's packages" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}
need wrk wrk
need nginx nginx
need curl curl

echo "building release binary" >&2
cargo build --release --quiet -p loadstar
BIN=target/release/loadstar

# wrk prints latency percentiles with --latency; this pulls req/s, p50 and p99.
measure() {
    local url=$1 out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    local non2xx
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    [[ -z "$non2xx" ]] || { echo "error: $non2xx non-2xx responses from $url" >&2; exit 1; }
    echo "$rps $p50 $p99"
}

wait_ready() {
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "server did not become ready" >&2
    exit 1
}

json_field() { sed -E "s/.*\"$1\":\"?([^\",}]+)\"?.*/\1/"; }

# Starts serve on the given database URL and seeds one product, whose id it leaves in
# PRODUCT (not printed: a command substitution would run this in a subshell and lose
# SERVER_PID).
start_and_seed() {
    local database_url=$1
    LOADSTAR_DATABASE__URL="$database_url" LOADSTAR_LOG__LEVEL=warn \
        "$BIN" admin create --data-dir "$WORK/data" --email bench@example.com --password 'bench password' >/dev/null
    LOADSTAR_DATABASE__URL="$database_url" LOADSTAR_LOG__LEVEL=warn \
        "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready
    local token
    token=$(curl -s "http://127.0.0.1:$PORT/v1/sessions" -H 'content-type: application/json' \
        -d '{"email":"bench@example.com","password":"bench password"}' | json_field token)
    PRODUCT=$(curl -sf "http://127.0.0.1:$PORT/v1/products" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d '{"sku":"bench-1","name":"Bench mug","description":"benchmark","priceCents":1250,"currency":"EUR","stock":100}' \
        | json_field id)
    [[ "$PRODUCT" =~ ^[0-9]+$ ]] || { echo "seeding failed: $PRODUCT" >&2; exit 1; }
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

declare -A RESULT

# Peer: nginx answering the same tiny JSON body as /healthz.
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { default_type application/json; return 200 '{"status":"ok"}'; }
    }
}
NGINX
nginx -c "$WORK/nginx.conf" &
NGINX_PID=$!
sleep 0.5
RESULT[nginx]=$(measure "http://127.0.0.1:$NGINX_PORT/healthz")
kill "$NGINX_PID"; NGINX_PID=""

# SQLite (embedded default).
start_and_seed ""
RESULT[sqlite_floor]=$(measure "http://127.0.0.1:$PORT/healthz")
RESULT[sqlite_product]=$(measure "http://127.0.0.1:$PORT/v1/products/$PRODUCT")
stop_server
rm -rf "$WORK/data"

# PostgreSQL (scripts/postgres.sh starts or installs a local server).
admin_url=$(bash scripts/postgres.sh | tail -n 1)
psql -q "$admin_url" -c 'DROP DATABASE IF EXISTS loadstar_bench' -c 'CREATE DATABASE loadstar_bench'
start_and_seed "${admin_url%/*}/loadstar_bench"
RESULT[postgres_floor]=$(measure "http://127.0.0.1:$PORT/healthz")
RESULT[postgres_product]=$(measure "http://127.0.0.1:$PORT/v1/products/$PRODUCT")
stop_server

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() {
    local name=$1 key=$2 floor_key=$3
    read -r rps p50 p99 <<<"${RESULT[$key]}"
    read -r floor _ _ <<<"${RESULT[$floor_key]}"
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "$(ratio "$rps" "$floor")"
}

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| endpoint | req/s | p50 | p99 | × floor |"
echo "|---|---|---|---|---|"
row "nginx fixed JSON (peer)" nginx sqlite_floor
row "GET /healthz (floor), SQLite run" sqlite_floor sqlite_floor
row "GET /v1/products/{id}, SQLite" sqlite_product sqlite_floor
row "GET /healthz (floor), PostgreSQL run" postgres_floor postgres_floor
row "GET /v1/products/{id}, PostgreSQL" postgres_product postgres_floor
