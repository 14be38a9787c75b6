#!/usr/bin/env bash
# Ensure a Redis server answers on 127.0.0.1:6379. Prints its URL as the last line on
# stdout; progress goes to stderr. Idempotent: safe to run any number of times.
#
# - Server already up: changes nothing.
# - Server down: installs Debian's `redis-server` if needed and starts one that keeps
#   nothing on disk (a cache's data is disposable), then waits until it answers PING.
set -euo pipefail

readonly HOST=127.0.0.1
readonly PORT=6379
readonly URL="redis://${HOST}:${PORT}"
readonly READY_TIMEOUT_SECS="${LOADSTAR_REDIS_READY_TIMEOUT:-30}"

# shellcheck source=scripts/service_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/service_helpers.sh"

answers_ping() {
    # RESP over bash's /dev/tcp: no client needed.
    local reply
    exec 3<>"/dev/tcp/${HOST}/${PORT}" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || reply=""
    exec 3>&- 3<&-
    [[ "$reply" == +PONG* ]]
}

if answers_ping; then
    log "a server already answers on ${HOST}:${PORT}"
    printf '%s\n' "$URL"
    exit 0
fi

command -v redis-server >/dev/null 2>&1 || apt_install redis-server || true
command -v redis-server >/dev/null 2>&1 || die "redis-server did not install"

log "starting redis-server"
as_root mkdir -p /var/lib/redis /var/log/redis
as_root redis-server --daemonize yes --bind "$HOST" --port "$PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/loadstar.log >&2

deadline=$((SECONDS + READY_TIMEOUT_SECS))
until answers_ping; do
    if ((SECONDS >= deadline)); then
        tail -n 20 /var/log/redis/loadstar.log >&2 2>/dev/null || true
        die "Redis did not answer on ${HOST}:${PORT} within ${READY_TIMEOUT_SECS}s"
    fi
    sleep 1
done
log "Redis is ready"
printf '%s\n' "$URL"
