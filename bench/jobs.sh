#!/usr/bin/env bash
# Job-queue benchmark: 100,000 no-op jobs enqueued, then processed, on every loadstar
# backend, and the same workload on apalis 1.0 with its PostgreSQL storage as the peer,
# all in one run. Per backend: bulk enqueue jobs/s, drain jobs/s (queue pre-filled, the
# workers start), and enqueue-to-start latency p50/p99 at a steady rate with idle workers.
#
#   bench/jobs.sh                     # defaults below
#   JOBS=20000 LATENCY_SECS=5 bench/jobs.sh
#
# Loopback only (PostgreSQL on 127.0.0.1 via scripts/postgres.sh, RabbitMQ via
# scripts/rabbitmq.sh; the RabbitMQ backend keeps its ledger in a scratch PostgreSQL
# database and its queues expire after the run); every phase of every
# backend is bounded by PHASE_TIMEOUT_SECS and the whole backend run by RUN_TIMEOUT_SECS.
# A scratch database per backend and run is created and dropped. Prints a Markdown table
# and writes it to bench/results/jobs-<date>.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS=${JOBS:-100000}
ENQUEUERS=${ENQUEUERS:-4}      # concurrent bulk enqueuers
BATCH=${BATCH:-100}            # jobs per enqueue transaction
POOLS=${POOLS:-2}              # worker pools (apalis: workers)
CONCURRENCY=${CONCURRENCY:-64} # jobs at once per pool / worker
CONNECTIONS=${CONNECTIONS:-16} # database connections per process
APALIS_BATCH_SIZE=${APALIS_BATCH_SIZE:-64} # apalis fetch size (loadstar fetches up to CONCURRENCY)
RATE=${RATE:-200}              # latency phase: jobs/s, one enqueue each
LATENCY_SECS=${LATENCY_SECS:-10}
PHASE_TIMEOUT_SECS=${PHASE_TIMEOUT_SECS:-300}
RUN_TIMEOUT_SECS=${RUN_TIMEOUT_SECS:-900}
BACKENDS=${BACKENDS:-"sqlite postgres rabbitmq"}

SCRATCH=()
ADMIN_URL=""
cleanup() {
    for database in "${SCRATCH[@]+"${SCRATCH[@]}"}"; do
        psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

echo "building release binaries" >&2
cargo build --release --quiet -p loadstar-loadtest
# The apalis peer is its own workspace (apalis-postgres needs sqlx 0.9, loadstar 0.8).
env -u DATABASE_URL cargo build --release --quiet --locked \
    --manifest-path bench/apalis-peer/Cargo.toml --target-dir target/apalis-peer
LOADTEST=target/release/loadstar-loadtest
APALIS=target/apalis-peer/release/loadstar-bench-apalis

ADMIN_URL=$(bash scripts/postgres.sh | tail -n 1)
case "$ADMIN_URL" in
    postgres://*@127.0.0.1:*) ;;
    *) echo "refusing a PostgreSQL that is not on loopback: $ADMIN_URL" >&2; exit 1 ;;
esac

RABBITMQ_URL=""
if [[ " $BACKENDS " == *" rabbitmq "* ]]; then
    RABBITMQ_URL=$(bash scripts/rabbitmq.sh | tail -n 1)
    case "$RABBITMQ_URL" in
        amqp://*@127.0.0.1:*) ;;
        *) echo "refusing a RabbitMQ that is not on loopback: $RABBITMQ_URL" >&2; exit 1 ;;
    esac
fi

# A fresh database for one backend of this run, its URL left in SCRATCH_URL (not printed:
# a command substitution would run this in a subshell and lose SCRATCH).
scratch_database() {
    local name="loadstar_bench_${1}_$$"
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    SCRATCH+=("$name")
    SCRATCH_URL="${ADMIN_URL%/*}/$name"
}

ROWS=()
for backend in $BACKENDS; do
    url=""
    if [[ "$backend" != sqlite ]]; then scratch_database "$backend"; url=$SCRATCH_URL; fi
    echo "running $backend" >&2
    ROWS+=("$(timeout "$RUN_TIMEOUT_SECS" "$LOADTEST" jobs --backend "$backend" \
        ${url:+--database-url "$url"} \
        ${RABBITMQ_URL:+--rabbitmq-url "$RABBITMQ_URL"} --jobs "$JOBS" --enqueuers "$ENQUEUERS" --batch "$BATCH" \
        --pools "$POOLS" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
        --rate "$RATE" --latency-secs "$LATENCY_SECS" --phase-timeout-secs "$PHASE_TIMEOUT_SECS")")
done

echo "running apalis (peer)" >&2
scratch_database apalis
url=$SCRATCH_URL
ROWS+=("$(timeout "$RUN_TIMEOUT_SECS" "$APALIS" --database-url "$url" --jobs "$JOBS" \
    --enqueuers "$ENQUEUERS" --batch "$BATCH" --workers "$POOLS" --concurrency "$CONCURRENCY" \
    --batch-size "$APALIS_BATCH_SIZE" --connections "$CONNECTIONS" --rate "$RATE" \
    --latency-secs "$LATENCY_SECS" --phase-timeout-secs "$PHASE_TIMEOUT_SECS")")

mkdir -p bench/results
RESULT="bench/results/jobs-$(date -u +%Y-%m-%dT%H%M%SZ).md"
{
    echo "$JOBS no-op jobs; bulk enqueue: $ENQUEUERS enqueuers x $BATCH jobs per transaction;" \
        "drain: $POOLS pools x $CONCURRENCY; latency: $RATE jobs/s for ${LATENCY_SECS}s, one enqueue each;" \
        "$(nproc) cores, $(date -u +%Y-%m-%d)"
    echo
    "$LOADTEST" jobs-header
    printf '%s\n' "${ROWS[@]}"
} | tee "$RESULT"
echo "written to $RESULT" >&2
