#!/usr/bin/env bash
# Cache benchmark on PostgreSQL: GET /v1/products/{id} over a catalog of 10,000 products
# read at random (bench/random_product.lua), with the cache hit, with a miss every time
# (ttl 0: nothing is kept between requests), and with the cache off, against the
# framework floor (GET /healthz) of the same run; one hot product read by every
# connection; then the same with Redis as the second tier (a hit in the in-process tier,
# a hit in Redis with the in-process tier disabled, a miss). Load comes from wrk in a
# second process.
#
#   bench/cache.sh               # defaults: 2 wrk threads, 64 connections, 10 s per run
#   DURATION=30s bench/cache.sh
#
# Prints a Markdown table; paste it into docs/performance.md with the machine line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

need wrk wrk
need curl curl

echo "building release binary" >&2
cargo build --release --quiet -p loadstar
BIN=target/release/loadstar

admin_url=$(bash scripts/postgres.sh | tail -n 1)
redis_url=$(bash scripts/redis.sh | tail -n 1)
psql -q "$admin_url" -c 'DROP DATABASE IF EXISTS loadstar_bench_cache' -c 'CREATE DATABASE loadstar_bench_cache'
DB="${admin_url%/*}/loadstar_bench_cache"
RUN_ID="bench$(date +%s)"

# The catalog read at random: ids FIRST_ID .. FIRST_ID+ID_COUNT-1.
export FIRST_ID=1 ID_COUNT=10000

declare -A RESULT
# run KEY [NAME=value…]: serve with that cache configuration, measure random reads.
run() {
    local key=$1
    shift
    # A namespace per run: no run reads what an earlier one left in Redis.
    start_server LOADSTAR_DATABASE__URL="$DB" LOADSTAR_CACHE__NAMESPACE="$RUN_ID$key" "$@"
    RESULT[$key]=$(measure "http://127.0.0.1:$PORT" bench/random_product.lua)
    stop_server
}

start_server LOADSTAR_DATABASE__URL="$DB"
seed_product "$DB"
psql -q "$DB" -c "INSERT INTO products (id, sku, name, description, price_cents, currency, stock, version, created_at, updated_at)
    SELECT n, 'bench-cat-' || n, 'Catalog item ' || n, 'benchmark catalog', 100 + n, 'EUR', 100, 1, 0, 0
    FROM generate_series($FIRST_ID, $FIRST_ID + $ID_COUNT - 1) AS n"
RESULT[floor]=$(PATH_PREFIX="/healthz?n=" measure "http://127.0.0.1:$PORT" bench/random_product.lua)
RESULT[hot]=$(PATH_PREFIX="/v1/products/$PRODUCT?n=" measure "http://127.0.0.1:$PORT" bench/random_product.lua)
stop_server

run hit LOADSTAR_CACHE__WARM_UP_PRODUCTS=$ID_COUNT
run miss LOADSTAR_CACHE__PRODUCT__STRATEGY=cache_aside LOADSTAR_CACHE__PRODUCT__TTL_SECS=0
run off LOADSTAR_CACHE__PRODUCT__STRATEGY=off
run redis_local_hit LOADSTAR_CACHE__REDIS_URLS="$redis_url" LOADSTAR_CACHE__WARM_UP_PRODUCTS=$ID_COUNT
run redis_hit LOADSTAR_CACHE__REDIS_URLS="$redis_url" LOADSTAR_CACHE__LOCAL_MAX_BYTES=0 \
    LOADSTAR_CACHE__WARM_UP_PRODUCTS=$ID_COUNT
run redis_miss LOADSTAR_CACHE__REDIS_URLS="$redis_url" \
    LOADSTAR_CACHE__PRODUCT__STRATEGY=cache_aside LOADSTAR_CACHE__PRODUCT__TTL_SECS=0

row() {
    local name=$1 key=$2
    read -r rps p50 p99 <<<"${RESULT[$key]}"
    read -r floor _ _ <<<"${RESULT[floor]}"
    read -r off _ _ <<<"${RESULT[off]}"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" \
        "$(ratio "$rps" "$floor")" "$(ratio "$rps" "$off")"
}

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $(nproc) cores, PostgreSQL, $(date -u +%Y-%m-%d)"
echo
echo "| GET /v1/products/{id}, 10,000 products at random | req/s | p50 | p99 | × floor | × cache off |"
echo "|---|---|---|---|---|---|"
row "GET /healthz (floor)" floor
row "cache hit (in-process tier)" hit
row "cache miss every time (ttl 0)" miss
row "cache off" off
row "one hot product, cache hit" hot
row "Redis configured: in-process hit" redis_local_hit
row "Redis configured: Redis hit (in-process tier 0 bytes)" redis_hit
row "Redis configured: miss every time (ttl 0)" redis_miss
