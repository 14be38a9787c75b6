# Sourced by the scripts that start local services (postgres.sh, rabbitmq.sh): logging
# to stderr under the script's name, running as root, installing Debian packages.
# shellcheck shell=bash

SCRIPT_NAME="$(basename "${BASH_SOURCE[1]:-$0}")"

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command as root (directly, or via non-interactive sudo).
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Install Debian packages. A package whose post-install start fails without systemd
# (rabbitmq-server) still installs; the caller checks for what it needs.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}
