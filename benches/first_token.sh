#!/usr/bin/env bash
# What the first tokens of a freshly started gateway wait: a gateway (one
# thread, on CPU 1) starts, a client of the built-in issuer gets
# `TOKENS` (3) new ES256 tokens, and each goes once, in turn, to the JWT
# route (one curl each, after one public request has warmed the proxy
# path). Prints each token's `time_total` in ms; `STARTS` (5) fresh starts
# per binary, and the median of each position.
#
#   benches/first_token.sh
#   TOLLGATE_BINS="new=target/release/tollgate old=/tmp/tollgate-old" benches/first_token.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
STARTS="${STARTS:-5}"
TOKENS="${TOKENS:-3}"
if [ -z "${TOLLGATE_BINS:-}" ]; then
    cargo build --release --quiet --bin tollgate --example bench_upstream --example bench_token
    TOLLGATE_BINS="tollgate=./target/release/tollgate"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# one fresh start: prints the tokens' times in ms
one() { # binary
    rm -f "$work"/tollgate.db*
    UP=$(port); GW=$(port); ADMIN=$(port); METRICS=$(port)
    ./target/release/examples/bench_upstream "127.0.0.1:$UP" & local up=$!; pids+=($up)
    THREADS=1 bench_config "$GW" "$ADMIN" "$METRICS" > "$work/config.yaml"
    TOLLGATE_ADMIN_TOKEN=bench taskset -c 1 "$1" serve --config "$work/config.yaml" \
        > "$work/gateway.log" 2>&1 & local gw=$!; pids+=($gw)
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null && break
        sleep 0.1
    done
    local client
    client=$(admin /clients '{"name":"first","auth_type":"oauth2"}' | field '["id"]')
    admin /subscriptions "{\"client_id\":\"$client\",\"service\":\"up\"}" > /dev/null
    BENCH_TOKENS=$TOKENS ./target/release/examples/bench_token "$work/tollgate.db" \
        "http://127.0.0.1:$GW" tollgate "$client" > "$work/tokens"
    curl -fsS -o /dev/null "http://127.0.0.1:$GW$PUBLIC_PATH"
    local times=""
    while read -r token; do
        local out
        out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' \
            -H "Authorization: Bearer $token" "http://127.0.0.1:$GW$JWT_PATH")
        [ "${out%% *}" = 200 ] || { echo "a token was refused: $out" >&2; exit 1; }
        times="$times $(python3 -c "print(f'{${out#* } * 1000:.2f}')")"
    done < "$work/tokens"
    kill "$gw" "$up" 2>/dev/null || true
    wait "$gw" "$up" 2>/dev/null || true
    echo "$times"
}

echo "time of each new token after start, ms (token 1 .. $TOKENS)"
for named in $TOLLGATE_BINS; do
    name=${named%%=*} bin=${named#*=}
    rows=()
    for _ in $(seq 1 "$STARTS"); do
        row=$(one "$bin")
        rows+=("$row")
        printf '%-10s %s\n' "$name" "$row"
    done
    printf '%s\n' "${rows[@]}" | python3 -c "
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
print('%-10s' % '$name median', ' '.join('%.2f' % statistics.median(c) for c in zip(*rows)))
"
done
