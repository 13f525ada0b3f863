#!/usr/bin/env bash
# Where the memory of cached clients goes: N API-key clients in an SQLite
# store (examples/bench_seed), every key checked twice through the gateway
# under heaptrack, then what is still allocated at exit, by call site.
#
#   N=20000 benches/heap.sh
#   TOLLGATE_BIN=/tmp/tollgate-sys benches/heap.sh   # built before (no build)
#
# The gateway is built without its default `mimalloc` feature (heaptrack
# watches the C library's allocator, which mimalloc otherwise replaces)
# into target/heap, so the release build is left alone. Prints the
# resident memory before and after and heaptrack's largest live call
# sites; KEEP=DIR keeps the data.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-20000}"
GW=18380 ADMIN=18390 METRICS=18391 UP=18381
command -v heaptrack >/dev/null || { apt-get update -qq && apt-get install -y -qq heaptrack; }
for t in wrk sqlite3; do
    command -v "$t" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$t"; }
done

if [ -n "${TOLLGATE_BIN:-}" ]; then
    # a binary built before without mimalloc, and the release helpers
    tollgate=$TOLLGATE_BIN examples=target/release/examples
else
    CARGO_TARGET_DIR=target/heap cargo build --release --quiet --no-default-features \
        --bin tollgate --example bench_seed --example bench_upstream
    tollgate=target/heap/release/tollgate examples=target/heap/release/examples
fi

work="${KEEP:-$(mktemp -d)}"
mkdir -p "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    { wait; } 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

export TOLLGATE_PEPPER=heap-bench-pepper TOLLGATE_ADMIN_TOKEN=heap-bench
rm -f "$work/seed.db"
"$examples/bench_seed" "$work/seed.db" "$TOLLGATE_PEPPER" "$N" up "$work/keys" | sqlite3 "$work/seed.db"
"$examples/bench_upstream" "127.0.0.1:$UP" >/dev/null 2>&1 &
pids+=($!)
cat > "$work/heap.yaml" <<YAML
server:
  listen: ["127.0.0.1:$GW"]
  threads: 1
admin: { listen: "127.0.0.1:$ADMIN" }
metrics: { listen: "127.0.0.1:$METRICS" }
store: { url: "sqlite://$work/seed.db", cache: { ttl: 300s, max_entries: $((N * 2)) } }
logging: { level: error }
services:
  up: { upstreams: ["127.0.0.1:$UP"] }
routes:
  - { name: keyed, match: { path_prefix: /key }, service: up, auth: [api_key] }
YAML
heaptrack -o "$work/heap" "$tollgate" serve --config "$work/heap.yaml" > "$work/gateway.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null && break
    sleep 0.2
done
pid=$(pgrep -f "^$tollgate serve --config $work/heap.yaml" | head -1)
[ -n "$pid" ] || { echo "the gateway did not start: $(cat "$work/gateway.out")" >&2; exit 1; }
rss() { awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status"; }
before=$(rss)

answered() { curl -fsS --max-time 2 "http://127.0.0.1:$METRICS/metrics" 2>/dev/null \
    | awk '/^tollgate_requests_total\{route="keyed"/ {n += $2} END {print n + 0}'; }
wrk -t1 -c8 -d600s -s benches/compare/cycle.lua "http://127.0.0.1:$GW/key/" "$work/keys" X-API-Key > "$work/wrk.out" 2>&1 &
wrkpid=$!
pids+=("$wrkpid")
t0=$(date +%s)
while [ "$(answered)" -lt "$((N * 2))" ] && [ $(( $(date +%s) - t0 )) -lt 600 ]; do sleep 0.5; done
kill "$wrkpid" 2>/dev/null || true
wait "$wrkpid" 2>/dev/null || true
after=$(rss)
ok=$(curl -fsS "http://127.0.0.1:$METRICS/metrics" | awk '/^tollgate_requests_total\{route="keyed",service="up",status="200"\}/ {print $2 + 0}')
misses=$(curl -fsS "http://127.0.0.1:$METRICS/metrics" | awk '/^tollgate_cache_lookups_total\{cache="api_key",result="miss"\}/ {print $2 + 0}')
kill -INT "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
for _ in $(seq 1 100); do [ -s "$work/heap.zst" ] && ! pgrep -f "heaptrack -o $work/heap" >/dev/null && break; sleep 0.1; done

printf 'clients %s, 200 answers %s, store lookups %s\n' "$N" "${ok:-0}" "${misses:-0}"
awk -v b="$before" -v a="$after" -v n="$N" 'BEGIN {
    printf "resident under heaptrack: %.1f MiB at start, %.1f MiB after (%.0f bytes a client)\n", b, a, (a - b) * 1048576 / n }'
echo "largest call sites still allocated at exit (bytes, calls):"
heaptrack_print -f "$work/heap.zst" --print-leaks 1 --print-peaks 0 --print-allocators 0 \
    --print-temporary 0 2>/dev/null \
    | sed -n '/MEMORY LEAKS/,$p' \
    | awk 'function flush() { if (size != "") print "  " size "\t" calls "\t" where "\t" frame; size = "" }
           /leaked over .* calls from:$/ { flush(); size = $1; calls = $4; frame = ""; where = "-"; next }
           size != "" && frame == "" { f = $0; sub(/^ +/, "", f); frame = substr(f, 1, 90); next }
           size != "" && where == "-" && /^ +at src\// { w = $0; sub(/^ +at /, "", w); where = w }
           END { flush() }' \
    | sort -k1,1 -h -r | head -"${TOP:-25}"
