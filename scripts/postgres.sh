#!/usr/bin/env bash
# Ensure a PostgreSQL server is reachable on 127.0.0.1:5432 and that the
# admin URL below works without a password (used by the tests to create a
# fresh database per test). Prints the URL as the last line on stdout; all
# progress goes to stderr. Idempotent: safe to run any number of times.
#
# - Server already up: only verifies the URL (changes nothing).
# - Server down: installs Debian's `postgresql` if needed, creates/starts the
#   cluster with the Debian wrappers (which drop root to the `postgres` user),
#   trusts loopback TCP connections in pg_hba.conf, and waits until ready.
#
# Meant for development and CI machines: the trust rule it adds lets any local
# process connect to this server as any role without a password.
set -euo pipefail

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly ADMIN_URL="postgres://postgres@${PG_HOST}:${PG_PORT}/postgres"
readonly READY_TIMEOUT_SECS="${LOADSTAR_PG_READY_TIMEOUT:-60}"
readonly HBA_MARKER="# loadstar scripts/postgres.sh: trust loopback TCP"

# shellcheck source=scripts/service_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/service_helpers.sh"

# Is something accepting PostgreSQL connections on 127.0.0.1:5432?
server_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1
    elif command -v psql >/dev/null 2>&1; then
        # Any answer from the server (even an auth error) means it is up.
        local out
        out="$(psql -X -w "$ADMIN_URL" -Atqc 'select 1' 2>&1)" && return 0
        if grep -qiE 'could not connect|connection refused|no such file|timeout expired' <<<"$out"; then
            return 1
        fi
        return 0
    else
        (exec 3<>"/dev/tcp/${PG_HOST}/${PG_PORT}") 2>/dev/null
    fi
}

admin_url_works() {
    [[ "$(psql -X -w "$ADMIN_URL" -Atqc 'select 1' 2>/dev/null)" == 1 ]]
}

verify_admin_url() {
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
    if ! admin_url_works; then
        psql -X -w "$ADMIN_URL" -Atqc 'select 1' >&2 || true
        die "a server answers on ${PG_HOST}:${PG_PORT}, but '${ADMIN_URL}' does not work;" \
            "allow passwordless (trust) TCP login for user postgres from 127.0.0.1 in its pg_hba.conf"
    fi
}

finish() {
    verify_admin_url
    log "PostgreSQL is ready"
    printf '%s\n' "$ADMIN_URL"
    exit 0
}

wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_SECS))
    until pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "server not ready after ${READY_TIMEOUT_SECS}s; pg_lsclusters says:"
            pg_lsclusters >&2 || true
            [[ -n "${log_file:-}" && -r "$log_file" ]] && tail -n 30 "$log_file" >&2
            die "PostgreSQL did not become ready on ${PG_HOST}:${PG_PORT}"
        fi
        sleep 1
    done
}

# Put trust rules for loopback TCP at the top of pg_hba.conf (first match wins).
ensure_hba_trust() {
    local hba="$1"
    [[ -f "$hba" ]] || die "pg_hba.conf not found at $hba"
    if as_root grep -qF "$HBA_MARKER" "$hba"; then
        return 0 # added by an earlier run
    fi
    # Already fine if the first rule for TCP from 127.0.0.1/32 trusts user
    # postgres on all databases (e.g. the preinstalled server on CI machines).
    # shellcheck disable=SC2016 # awk program, not shell
    if as_root awk '
        /^[[:space:]]*(#|$)/ { next }
        $1 ~ /^host/ && $4 == "127.0.0.1/32" {
            ok = ($2 == "all" && ($3 == "all" || $3 == "postgres") && $5 == "trust")
            exit
        }
        END { exit !ok }' "$hba"; then
        return 0
    fi
    log "adding loopback trust rules to $hba"
    local tmp
    tmp="$(mktemp)"
    {
        printf '%s\n' "$HBA_MARKER"
        printf 'host    all    all    127.0.0.1/32    trust\n'
        printf 'host    all    all    ::1/128         trust\n'
        printf '\n'
        as_root cat "$hba"
    } >"$tmp"
    # Rewrite in place so that owner and mode stay as they are.
    # shellcheck disable=SC2016 # expanded by the inner sh
    as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"
    rm -f "$tmp"
}

# ---------------------------------------------------------------------------

if server_up; then
    log "a server is already accepting connections on ${PG_HOST}:${PG_PORT}"
    finish
fi

log "no server on ${PG_HOST}:${PG_PORT}; starting one"

if ! command -v pg_ctlcluster >/dev/null 2>&1 ||
    ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    apt_install postgresql
fi

# Prefer an existing cluster configured for port 5432 (any version);
# otherwise use "<newest installed version> main", creating it if needed.
pg_ver=""
pg_name=""
while read -r ver name port _status _owner _datadir _log; do
    if [[ "$port" == "$PG_PORT" ]]; then
        pg_ver="$ver"
        pg_name="$name"
    fi
done < <(pg_lsclusters -h 2>/dev/null || true)

if [[ -z "$pg_ver" ]]; then
    newest="$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)"
    pg_ver="${newest#/usr/lib/postgresql/}"
    pg_ver="${pg_ver%%/*}"
    pg_name=main
    if [[ -d "/etc/postgresql/${pg_ver}/${pg_name}" ]]; then
        log "setting port ${PG_PORT} for cluster ${pg_ver}/${pg_name}"
        as_root pg_conftool "$pg_ver" "$pg_name" set port "$PG_PORT"
    else
        log "creating cluster ${pg_ver}/${pg_name}"
        as_root pg_createcluster --port "$PG_PORT" "$pg_ver" "$pg_name" >&2
    fi
fi

conf_dir="/etc/postgresql/${pg_ver}/${pg_name}"
log_file="/var/log/postgresql/postgresql-${pg_ver}-${pg_name}.log"
hba_file="$(as_root pg_conftool -s "$pg_ver" "$pg_name" show hba_file 2>/dev/null || true)"
hba_file="${hba_file:-${conf_dir}/pg_hba.conf}"
hba_file="${hba_file//\'/}"

# Debian's default listen_addresses ('localhost') covers 127.0.0.1; make sure
# nobody turned TCP off.
listen="$(as_root pg_conftool -s "$pg_ver" "$pg_name" show listen_addresses 2>/dev/null || true)"
listen="${listen//\'/}"
if [[ -n "$listen" && "$listen" != *localhost* && "$listen" != *127.0.0.1* && "$listen" != *'*'* ]]; then
    log "setting listen_addresses = 'localhost' for ${pg_ver}/${pg_name} (was '${listen}')"
    as_root pg_conftool "$pg_ver" "$pg_name" set listen_addresses localhost
fi

ensure_hba_trust "$hba_file"

# Status: 0 = running, 3 = not running (pg_ctlcluster, like pg_ctl status).
if as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" status >/dev/null 2>&1; then
    # Running but not reachable on 127.0.0.1:5432: apply the settings above.
    log "cluster ${pg_ver}/${pg_name} runs but is not reachable on TCP; restarting it"
    as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" restart >&2
else
    log "starting cluster ${pg_ver}/${pg_name}"
    as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" start >&2
fi

wait_ready
finish
