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

# shellcheck source=bench/lib.sh
source bench/lib.sh
NGINX_PORT=${NGINX_PORT:-18081}
NGINX_PID=""

cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

need wrk wrk
need nginx nginx
need curl curl

echo "building release binary" >&2
cargo build --release --quiet -p loadstar
BIN=target/release/loadstar

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
start_server LOADSTAR_DATABASE__URL=""
seed_product ""
RESULT[sqlite_floor]=$(measure "http://127.0.0.1:$PORT/healthz")
RESULT[sqlite_product]=$(measure "http://127.0.0.1:$PORT/v1/products/$PRODUCT")
stop_server
rm -rf "$WORK/data"

# PostgreSQL (scripts/postgres.sh starts or installs a local server).
admin_url=$(bash scripts/postgres.sh | tail -n 1)
psql -q "$admin_url" -c 'DROP DATABASE IF EXISTS loadstar_bench' -c 'CREATE DATABASE loadstar_bench'
start_server LOADSTAR_DATABASE__URL="${admin_url%/*}/loadstar_bench"
seed_product "${admin_url%/*}/loadstar_bench"
RESULT[postgres_floor]=$(measure "http://127.0.0.1:$PORT/healthz")
RESULT[postgres_product]=$(measure "http://127.0.0.1:$PORT/v1/products/$PRODUCT")
stop_server

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
