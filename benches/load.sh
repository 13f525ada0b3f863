#!/usr/bin/env bash
# Load comparison on loopback, in one run: the same upstream (a) directly
# and (b) through Tollgate on a public route. Each target is measured in
# ROUNDS alternating rounds; the medians are reported with their ratio.
#
#   benches/load.sh            # DURATION=10s CONNECTIONS=32 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-3}"

cargo build --release --quiet --bin tollgate --example bench_upstream
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); GW=$(port); ADMIN=$(port); METRICS=$(port)

./target/release/examples/bench_upstream "127.0.0.1:$UP" & pids+=($!)
cat > "$work/bench.yaml" <<YAML
server:
  listen: ["127.0.0.1:$GW"]
  threads: 1
admin: { listen: "127.0.0.1:$ADMIN" }
metrics: { listen: "127.0.0.1:$METRICS" }
store: { url: "sqlite://$work/tollgate.db" }
logging: { level: warn }
services:
  up: { upstreams: ["127.0.0.1:$UP"] }
routes:
  - { name: public, match: { path_prefix: / }, service: up, auth: public }
YAML
TOLLGATE_ADMIN_TOKEN=bench ./target/release/tollgate serve --config "$work/bench.yaml" >"$work/gw.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$GW/" >/dev/null 2>&1 && break
    sleep 0.1
done

# wrk --latency prints "50% 1.23ms"; normalise to milliseconds
run() {
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$1" > "$work/out" 2>&1
    python3 - "$work/out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {errors.group(1) if errors else 0}")
PY
}

declare -A results
targets=(direct public)
url_direct="http://127.0.0.1:$UP/"
url_public="http://127.0.0.1:$GW/"
for r in $(seq 1 "$ROUNDS"); do
    for t in "${targets[@]}"; do
        url_var="url_$t"
        results[$t]+="$(run "${!url_var}");"
        echo "round $r $t: ${results[$t]##*;}" >/dev/null
    done
done

python3 - "${results[direct]}" "${results[public]}" "$CONNECTIONS" "$DURATION" "$ROUNDS" <<'PY'
import statistics, sys
names = ["direct upstream", "tollgate public route"]
rows = []
for raw in sys.argv[1:3]:
    runs = [list(map(float, r.split())) for r in raw.split(";") if r.strip()]
    rows.append([statistics.median(c) for c in zip(*runs)])
print(f"wrk -t1 -c{sys.argv[3]} -d{sys.argv[4]}, median of {sys.argv[5]} rounds, loopback")
print(f"{'target':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
for name, (rps, p50, p99, err) in zip(names, rows):
    print(f"{name:<24}{rps:>10.0f}{p50:>10.3f}{p99:>10.3f}{err:>9.0f}")
print(f"ratio tollgate/direct req/s: {rows[1][0] / rows[0][0]:.2f}")
PY
