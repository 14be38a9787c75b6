# Shared by the HTTP benchmarks (api.sh, cache.sh): the load settings (each can be set
# in the environment), tools, wrk measurement, and a `loadstar serve` started, checked
# and stopped. Sourced from the repository root; WORK is a scratch directory the
# sourcing script removes.

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
WORK=$(mktemp -d)
SERVER_PID=""

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 from Debian's packages" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}

# measure URL [WRK_LUA_SCRIPT]: wrk prints latency percentiles with --latency; this
# pulls req/s, p50 and p99, and fails on any non-2xx answer.
measure() {
    local url=$1 script=${2:-} out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency ${script:+-s "$script"} "$url")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    local non2xx
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    [[ -z "$non2xx" ]] || { echo "error: $non2xx non-2xx responses from $url" >&2; exit 1; }
    echo "$rps $p50 $p99"
}

wait_ready() {
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "server did not become ready; its log:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

json_field() { sed -E "s/.*\"$1\":\"?([^\",}]+)\"?.*/\1/"; }

# Starts `serve` on $PORT with the environment given as NAME=value arguments, and
# waits until it is ready.
start_server() {
    env "$@" LOADSTAR_LOG__LEVEL=warn \
        "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

# Creates the bench admin (once per database) and one product through the running
# server; leaves its id in PRODUCT (not printed: a command substitution would run this
# in a subshell).
seed_product() {
    local database_url=$1 token
    LOADSTAR_DATABASE__URL="$database_url" LOADSTAR_LOG__LEVEL=warn \
        "$BIN" admin create --data-dir "$WORK/data" --email bench@example.com --password 'bench password' >/dev/null
    token=$(curl -s "http://127.0.0.1:$PORT/v1/sessions" -H 'content-type: application/json' \
        -d '{"email":"bench@example.com","password":"bench password"}' | json_field token)
    PRODUCT=$(curl -sf "http://127.0.0.1:$PORT/v1/products" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d '{"sku":"bench-1","name":"Bench mug","description":"benchmark","priceCents":1250,"currency":"EUR","stock":100}' \
        | json_field id)
    [[ "$PRODUCT" =~ ^[0-9]+$ ]] || { echo "seeding failed: $PRODUCT" >&2; exit 1; }
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
