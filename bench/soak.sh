#!/usr/bin/env bash
# Soak: SOAK_SECS (default 600) of mixed load on one `loadstar serve` (release build):
# wrk reads one cached product over READ_CONNECTIONS connections as fast as it can, while
# `loadstar-loadtest orders` places ORDER_RATE orders/s of another product (each order
# charges the payment simulator and fans out `order.paid` on the events queue). Every
# SAMPLE_SECS the server's RSS and each queue's backlog (available + running jobs) are
# sampled; nobody scrapes /metrics. Prints a Markdown table of the samples and the load's
# summaries, and keeps the samples in bench/results/soak-<backend>-<time>.tsv.
#
#   bench/soak.sh                                   # SQLite, 10 minutes, 100 orders/s
#   SOAK_SECS=60 ORDER_RATE=300 bench/soak.sh       # a quick run
#   BACKEND=postgres bench/soak.sh                  # scratch database on 127.0.0.1
#   BACKEND=rabbitmq bench/soak.sh                  # jobs on RabbitMQ, ledger on PostgreSQL
#   BIN=/path/to/loadstar bench/soak.sh             # another build of the server
#   READ_CONNECTIONS=0 ORDER_RATE=400 bench/soak.sh # orders only: the pipeline's own ceiling
#   SERVER_ENV_EXTRA="LOADSTAR_WORKERS__A__CONCURRENCY=8 ..." bench/soak.sh  # more server settings
#
# Loopback only; every process it starts is stopped and its scratch data removed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh
SOAK_SECS=${SOAK_SECS:-600}
SAMPLE_SECS=${SAMPLE_SECS:-10}
ORDER_RATE=${ORDER_RATE:-100}
READ_CONNECTIONS=${READ_CONNECTIONS:-16}
BACKEND=${BACKEND:-sqlite}
SIM_PORT=${SIM_PORT:-19090}
RELEASE_DIR=${CARGO_TARGET_DIR:-target}/release
LOADTEST=$RELEASE_DIR/loadstar-loadtest
SIM_PID="" WRK_PID="" ORDERS_PID="" DATABASE="" ADMIN_URL=""

cleanup() {
    for pid in "$WRK_PID" "$ORDERS_PID" "$SIM_PID"; do
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    stop_server
    if [[ -n "$DATABASE" ]]; then
        psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

need wrk wrk
need curl curl

echo "building release binaries" >&2
cargo build --release --quiet -p loadstar-loadtest
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet -p loadstar
    BIN=$RELEASE_DIR/loadstar
fi

SERVER_ENV=(LOADSTAR_PAYMENTS__URL="http://127.0.0.1:$SIM_PORT")
case "$BACKEND" in
    sqlite) DATABASE_URL="" ;;
    postgres | rabbitmq)
        ADMIN_URL=$(bash scripts/postgres.sh | tail -n 1)
        case "$ADMIN_URL" in
            postgres://*@127.0.0.1:*) ;;
            *) echo "refusing a PostgreSQL that is not on loopback: $ADMIN_URL" >&2; exit 1 ;;
        esac
        DATABASE="loadstar_soak_$$"
        psql -q "$ADMIN_URL" -c "CREATE DATABASE $DATABASE"
        DATABASE_URL="${ADMIN_URL%/*}/$DATABASE"
        if [[ "$BACKEND" == rabbitmq ]]; then
            RABBITMQ_URL=$(bash scripts/rabbitmq.sh | tail -n 1)
            case "$RABBITMQ_URL" in
                amqp://*@127.0.0.1:*) ;;
                *) echo "refusing a RabbitMQ that is not on loopback: $RABBITMQ_URL" >&2; exit 1 ;;
            esac
            SERVER_ENV+=(LOADSTAR_QUEUE__BACKEND=rabbitmq LOADSTAR_QUEUE__RABBITMQ_URL="$RABBITMQ_URL")
        fi
        ;;
    *) echo "BACKEND must be sqlite, postgres or rabbitmq" >&2; exit 1 ;;
esac
SERVER_ENV+=(LOADSTAR_DATABASE__URL="$DATABASE_URL")
# shellcheck disable=SC2206 # NAME=value words, split on purpose
SERVER_ENV+=(${SERVER_ENV_EXTRA:-})

# The payment provider, with room for every charge.
"$BIN" sim payments --listen "127.0.0.1:$SIM_PORT" --capacity 100000 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!

start_server "${SERVER_ENV[@]}"
LOADSTAR_DATABASE__URL="$DATABASE_URL" LOADSTAR_LOG__LEVEL=warn \
    "$BIN" admin create --data-dir "$WORK/data" --email soak-admin@example.com --password 'soak admin password' >/dev/null
B="http://127.0.0.1:$PORT"
post() { curl -sf "$B$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }
ADMIN=$(post /v1/sessions '{"email":"soak-admin@example.com","password":"soak admin password"}' | json_field token)
product() {
    post /v1/products "{\"sku\":\"$1\",\"name\":\"Soak $1\",\"priceCents\":1250,\"currency\":\"EUR\",\"stock\":1000000000}" \
        -H "authorization: Bearer $ADMIN" | json_field id
}
READ_PRODUCT=$(product soak-read)   # read only: stays cached
ORDER_PRODUCT=$(product soak-order) # ordered: its stock changes with every order
post /v1/users '{"email":"soak-buyer@example.com","password":"soak buyer password","name":"Buyer"}' >/dev/null
LOGIN=$(post /v1/sessions '{"email":"soak-buyer@example.com","password":"soak buyer password"}')
BUYER=$(json_field token <<<"$LOGIN")
BUYER_ID=$(json_field userId <<<"$LOGIN")

# backlog QUEUE: available + running jobs of QUEUE, from the admin API.
backlog() {
    curl -s "$B/v1/admin/queues" -H "authorization: Bearer $ADMIN" \
        | tr '{' '\n' | grep "\"queue\":\"$1\"" \
        | sed -E 's/.*"available":([0-9]+).*"running":([0-9]+).*/\1 \2/' \
        | awk '{ print $1 + $2 } END { if (NR == 0) print 0 }'
}
rss_mib() { awk '$1 == "VmRSS:" { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }

if ((READ_CONNECTIONS > 0)); then
    wrk -t"$THREADS" -c"$READ_CONNECTIONS" -d"${SOAK_SECS}s" --latency "$B/v1/products/$READ_PRODUCT" >"$WORK/wrk.out" &
    WRK_PID=$!
else
    : >"$WORK/wrk.out" # orders only
fi
LOADSTAR_BENCH_TOKEN="$BUYER" "$LOADTEST" orders --url "$B" --user-id "$BUYER_ID" \
    --product-id "$ORDER_PRODUCT" --rate "$ORDER_RATE" --duration-secs "$SOAK_SECS" >"$WORK/orders.out" &
ORDERS_PID=$!

mkdir -p bench/results
SAMPLES="bench/results/soak-$BACKEND-$(date -u +%Y-%m-%dT%H%M%SZ).tsv"
printf 'seconds\trss_mib\tpayments_backlog\tevents_backlog\n' >"$SAMPLES"
started=$(date +%s)
while kill -0 "$ORDERS_PID" 2>/dev/null || { [[ -n "$WRK_PID" ]] && kill -0 "$WRK_PID" 2>/dev/null; }; do
    printf '%s\t%s\t%s\t%s\n' "$(($(date +%s) - started))" "$(rss_mib)" \
        "$(backlog payments)" "$(backlog events)" >>"$SAMPLES"
    sleep "$SAMPLE_SECS"
done
wait $WRK_PID "$ORDERS_PID" || true
WRK_PID="" ORDERS_PID=""
printf '%s\t%s\t%s\t%s\n' "$(($(date +%s) - started))" "$(rss_mib)" \
    "$(backlog payments)" "$(backlog events)" >>"$SAMPLES"
# Where the workers' time went: one scrape, after the load (the soak itself never scrapes).
curl -s "$B/metrics" >"$WORK/metrics"

echo
echo "soak: $BACKEND, ${SOAK_SECS} s, reads wrk -t$THREADS -c$READ_CONNECTIONS, $ORDER_RATE orders/s offered, $(nproc) cores, $(date -u +%Y-%m-%d), $BIN"
echo
awk '/Requests\/sec/ { print "reads: " $2 " req/s" } /Non-2xx/ { print "reads: non-2xx " $NF }' "$WORK/wrk.out"
cat "$WORK/orders.out"
echo
echo "| s | RSS MiB | payments backlog | events backlog |"
echo "|---|---|---|---|"
tail -n +2 "$SAMPLES" | awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
echo
echo "| job kind | completed | mean run | run-seconds (slot time) |"
echo "|---|---|---|---|"
awk '
    /^job_run_seconds_sum\{/ { match($0, /kind="[^"]+"/); kind = substr($0, RSTART + 6, RLENGTH - 7); sum[kind] = $NF }
    /^job_run_seconds_count\{/ { match($0, /kind="[^"]+"/); kind = substr($0, RSTART + 6, RLENGTH - 7); count[kind] = $NF }
    END { for (kind in count) if (count[kind] > 0) printf "| %s | %d | %.2f ms | %.0f s |\n", kind, count[kind], 1000 * sum[kind] / count[kind], sum[kind] }
' "$WORK/metrics" | sort
echo
echo "samples: $SAMPLES"
