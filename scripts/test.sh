#!/usr/bin/env bash
# Run the workspace tests (the README's test command).
#
# Tests use LOADSTAR_TEST_DATABASE_URL as an *admin* URL and create a fresh
# database per test. If it is not set, scripts/postgres.sh makes sure a local
# PostgreSQL is running and provides it; set LOADSTAR_TEST_SKIP_POSTGRES=1 to
# skip that (tests that need PostgreSQL then decide for themselves what to do).
# Likewise LOADSTAR_TEST_RABBITMQ_URL names the broker of the RabbitMQ job-queue
# tests (scripts/rabbitmq.sh provides it unless LOADSTAR_TEST_SKIP_RABBITMQ=1) and
# LOADSTAR_TEST_REDIS_URL the Redis of the cache tests (scripts/redis.sh, unless
# LOADSTAR_TEST_SKIP_REDIS=1).
#
# The tests run under cargo-nextest when it is installed (each test in its own process,
# a hung test killed and named after 5 minutes: see .config/nextest.toml), else under
# `cargo test`; LOADSTAR_TEST_RUNNER=cargo forces the latter. Extra arguments go to the
# runner, e.g. `scripts/test.sh -p loadstar-shop` (nextest) or
# `LOADSTAR_TEST_RUNNER=cargo scripts/test.sh -p loadstar-shop -- --nocapture`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# provide VAR SKIP_VAR SCRIPT: unless VAR is set or SKIP_VAR=1, run SCRIPT (which starts
# the service when absent) and take the URL it prints last; export VAR when set.
provide() {
    local var="$1" skip="$2" script="$3" out
    if [[ -z "${!var:-}" && "${!skip:-0}" != 1 ]]; then
        out="$(bash "$script")"
        printf -v "$var" '%s' "$(tail -n 1 <<<"$out")"
        [[ -n "${!var}" ]] || { echo "test.sh: $script printed no URL" >&2; exit 1; }
    fi
    if [[ -n "${!var:-}" ]]; then
        export "${var?}"
        echo "test.sh: ${var}=${!var}" >&2
    fi
}
provide LOADSTAR_TEST_DATABASE_URL LOADSTAR_TEST_SKIP_POSTGRES scripts/postgres.sh
provide LOADSTAR_TEST_RABBITMQ_URL LOADSTAR_TEST_SKIP_RABBITMQ scripts/rabbitmq.sh
provide LOADSTAR_TEST_REDIS_URL LOADSTAR_TEST_SKIP_REDIS scripts/redis.sh

# The clock-skew process test runs a worker and an api node under libfaketime (Debian's
# `faketime`); without it that test says so and does nothing.
if ! command -v faketime >/dev/null 2>&1; then
    (source scripts/service_helpers.sh && apt_install faketime) ||
        echo "test.sh: faketime did not install; the clock-skew test will not run" >&2
fi

# Each PostgreSQL test creates its own database; drop the ones earlier runs left behind.
if [[ -n "${LOADSTAR_TEST_DATABASE_URL:-}" ]] && command -v psql >/dev/null 2>&1; then
    psql -qAt "$LOADSTAR_TEST_DATABASE_URL" \
        -c "SELECT datname FROM pg_database WHERE datname LIKE 'loadstar\_test\_%'" 2>/dev/null |
        while read -r stale; do
            psql -q "$LOADSTAR_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS \"$stale\"" >/dev/null 2>&1 || true
        done
fi

# Run, then close with one summary line over every test binary, so the last line says
# how many tests ran in total (cargo's own last line belongs to whichever binary ran last;
# nextest prints its own summary).
if [[ "${LOADSTAR_TEST_RUNNER:-}" != cargo ]] && cargo nextest --version >/dev/null 2>&1; then
    # The profile comes from NEXTEST_PROFILE (CI: `ci`); not a LOADSTAR_ variable, which
    # the configuration would read as a key.
    exec cargo nextest run --workspace --locked "$@"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
