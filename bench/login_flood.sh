#!/usr/bin/env bash
# Login flood: FLOOD concurrent connections (default 200) post wrong passwords for one
# account to `loadstar serve` for DURATION, with the production Argon2id cost (19 MiB,
# 2 passes). Samples the server's VmRSS every 0.5 s from /proc and prints idle, peak
# (VmHWM) and after-idle RSS, the answers by status, and whether the right password still
# logs in afterwards.
#
#   bench/login_flood.sh                              # 200 connections, 10 s
#   FLOOD=50 DURATION=5s bench/login_flood.sh
#   BIN=/path/to/other/loadstar bench/login_flood.sh  # e.g. a build from before a change
#
# Loopback only; the server and its data directory are removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh
FLOOD=${FLOOD:-200}
IDLE_SECS=${IDLE_SECS:-5}

cleanup() {
    stop_server
    [[ -n "${SAMPLER_PID:-}" ]] && kill "$SAMPLER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

need wrk wrk
need curl curl

if [[ -z "${BIN:-}" ]]; then
    echo "building release binary" >&2
    cargo build --release --quiet -p loadstar
    BIN=target/release/loadstar
fi

rss_kib() { awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"; }
mib() { awk -v kib="$1" 'BEGIN { printf "%.0f", kib / 1024 }'; }

start_server LOADSTAR_AUTH__ARGON2_MEMORY_KIB=19456 LOADSTAR_AUTH__ARGON2_ITERATIONS=2
curl -sf "http://127.0.0.1:$PORT/v1/users" -H 'content-type: application/json' \
    -d '{"email":"flood@example.com","password":"the right password","name":"Flood"}' >/dev/null
idle=$(rss_kib "$SERVER_PID" VmRSS)

cat >"$WORK/flood.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"flood@example.com","password":"a wrong password"}'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
    local total = {}
    for _, thread in ipairs(threads) do
        for status, count in pairs(thread:get("statuses")) do
            total[status] = (total[status] or 0) + count
        end
    end
    for status, count in pairs(total) do io.write(string.format("status %d: %d\n", status, count)) end
end
LUA

: >"$WORK/rss.samples"
(while kill -0 "$SERVER_PID" 2>/dev/null; do rss_kib "$SERVER_PID" VmRSS >>"$WORK/rss.samples"; sleep 0.5; done) &
SAMPLER_PID=$!
wrk -t"$THREADS" -c"$FLOOD" -d"$DURATION" --timeout 60s -s "$WORK/flood.lua" \
    "http://127.0.0.1:$PORT/v1/sessions" >"$WORK/wrk.out"
sleep "$IDLE_SECS" # let the server fall idle before the after-flood sample
after=$(rss_kib "$SERVER_PID" VmRSS)
peak=$(rss_kib "$SERVER_PID" VmHWM)
kill "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
login=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/sessions" \
    -H 'content-type: application/json' \
    -d '{"email":"flood@example.com","password":"the right password"}')

echo
echo "$FLOOD connections x $DURATION of wrong-password logins, $(nproc) cores, $(date -u +%Y-%m-%d), $BIN"
echo
grep -E '^status|Requests/sec|requests in' "$WORK/wrk.out"
echo "right password afterwards: $login"
echo
echo "| RSS idle | RSS peak (VmHWM) | peak above idle | RSS ${IDLE_SECS} s after |"
echo "|---|---|---|---|"
echo "| $(mib "$idle") MiB | $(mib "$peak") MiB | $(mib $((peak - idle))) MiB | $(mib "$after") MiB |"
