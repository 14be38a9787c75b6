#!/usr/bin/env bash
# Ensure a RabbitMQ broker accepts AMQP on 127.0.0.1:5672 with the guest account (which
# RabbitMQ allows from loopback only). Prints the AMQP URL as the last line on stdout;
# progress goes to stderr. Idempotent: safe to run any number of times.
#
# - Broker already up: changes nothing.
# - Broker down: installs Debian's `rabbitmq-server` if needed, starts it detached, and
#   waits until it accepts connections.
set -euo pipefail

readonly HOST=127.0.0.1
readonly PORT=5672
readonly URL="amqp://guest:guest@${HOST}:${PORT}/%2f"
readonly READY_TIMEOUT_SECS="${LOADSTAR_RABBITMQ_READY_TIMEOUT:-120}"

# shellcheck source=scripts/service_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/service_helpers.sh"

port_open() { (exec 3<>"/dev/tcp/${HOST}/${PORT}") 2>/dev/null; }

broker_ready() {
    port_open || return 1
    # The port opens before the broker finishes booting; ask the node itself.
    if command -v rabbitmqctl >/dev/null 2>&1; then
        as_root rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1
    fi
}

if port_open; then
    log "a broker is already listening on ${HOST}:${PORT}"
    printf '%s\n' "$URL"
    exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
    # The package's own start attempt fails without systemd; we start it below.
    apt_install rabbitmq-server || true
    command -v rabbitmq-server >/dev/null 2>&1 || die "rabbitmq-server did not install"
fi

log "starting rabbitmq-server"
as_root env RABBITMQ_NODE_IP_ADDRESS="$HOST" rabbitmq-server -detached >&2 || true

deadline=$((SECONDS + READY_TIMEOUT_SECS))
until broker_ready; do
    if ((SECONDS >= deadline)); then
        tail -n 30 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
        die "RabbitMQ did not become ready on ${HOST}:${PORT} within ${READY_TIMEOUT_SECS}s"
    fi
    sleep 1
done
log "RabbitMQ is ready"
printf '%s\n' "$URL"
