#!/usr/bin/env bash
# Load comparison on loopback, in one run: the same upstream (a) directly,
# and through Tollgate on (b) a public route, (c) an API-key route and (d) a
# JWT route (built-in issuer), then the API-key route under a plan whose
# limit is never reached, so every request pays one limit decision: (e)
# counters in memory, (f) counters in Redis (a second gateway on the same
# store with redis.url), and (g) the public, API-key and JWT routes on a
# third gateway with `usage.enabled: false`, for the cost of counting usage.
#
# Each round measures every target once, one after the other; the report
# gives median req/s and, for each target, the median over rounds of its
# ratio to the run it is compared with in the same round (public route, or
# API-key route for the limits). Pairing within a round cancels the slow
# drift of a shared machine, which moves whole runs by 10% or more. The
# gateway's CPU time per request (user + system, from /proc) is reported
# too: it is what authentication adds, without the noise of throughput.
#
#   benches/load.sh     # DURATION=4s CONNECTIONS=32 ROUNDS=9 THREADS=1
#   REDIS_URL=redis://127.0.0.1:6379 (default; TOLLGATE_TEST_REDIS_URL too)
#
# Two controls send the public route the very credential header the
# authenticated routes get (public_key, public_bearer): the difference
# between an authenticated route and its control is the check and the
# identity headers, not the bytes of the credential. TARGETS picks and
# orders the gateway targets (default: all ten).
#
# THREADS is the gateway's worker count. 1 (the default here) makes the
# gateway the bottleneck, so its own cost shows in full; wrk and the
# upstream share the two cores of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap
source benches/common.sh
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

DURATION="${DURATION:-4s}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-9}"
THREADS="${THREADS:-1}"
targets=(public public_key keyed public_bearer jwt local redis public_off keyed_off jwt_off)
read -r -a order <<< "${TARGETS:-${targets[*]}}"
for t in "${order[@]}"; do
    [[ " ${targets[*]} " == *" $t "* ]] || { echo "unknown target $t in TARGETS (known: ${targets[*]})" >&2; exit 1; }
done

cargo build --release --quiet --bin tollgate --example bench_upstream --example bench_token
work="$(mktemp -d)"
pids=()
gateway_pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

UP=$(port); GW=$(port); ADMIN=$(port); METRICS=$(port); GW2=$(port); ADMIN2=$(port); METRICS2=$(port)
GW3=$(port); ADMIN3=$(port); METRICS3=$(port)
REDIS_URL="${REDIS_URL:-${TOLLGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}}"

./target/release/examples/bench_upstream "127.0.0.1:$UP" & pids+=($!)
bench_config "$GW" "$ADMIN" "$METRICS" > "$work/bench.yaml"
bench_config "$GW2" "$ADMIN2" "$METRICS2" "redis: { url: \"$REDIS_URL\" }" > "$work/bench-redis.yaml"
bench_config "$GW3" "$ADMIN3" "$METRICS3" "usage: { enabled: false }" > "$work/bench-nousage.yaml"
start() { # config admin proxy
    TOLLGATE_ADMIN_TOKEN=bench ./target/release/tollgate serve --config "$1" >"$1.log" 2>&1 & pids+=($!)
    gateway_pids+=($!)
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$3/" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "gateway with $1 did not start: $(cat "$1.log")" >&2; exit 1
}
start "$work/bench.yaml" "$ADMIN" "$GW"
start "$work/bench-redis.yaml" "$ADMIN2" "$GW2"
start "$work/bench-nousage.yaml" "$ADMIN3" "$GW3"

bench_clients
for gw in "$GW" "$GW2"; do
    curl -fsS -D - -o /dev/null -H "X-API-Key: $KEY" "http://127.0.0.1:$gw$LIMITED_PATH" | grep -qi '^ratelimit-limit' \
        || { echo "the limited route on :$gw answered without RateLimit headers" >&2; exit 1; }
done

# CPU seconds (user + system) a process has used, from /proc/PID/stat
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# One wrk run: "req/s p50_ms p99_ms non2xx gateway_cpu_us_per_request
# gateway_busy" (the last two are 0 when no gateway is involved; busy is
# the gateway's CPU seconds over the run's seconds: near 1 with one thread
# means the gateway, not wrk or the upstream, set the pace). wrk --latency prints
# "50% 1.23ms"; normalised to milliseconds.
run() { # url [header] [gateway pid]
    local header=()
    [ -n "${2:-}" ] && header=(-H "$2")
    local before=0
    [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${header[@]}" "$1" > "$work/out" 2>&1
    local ticks=0
    [ -n "${3:-}" ] && ticks=$(( $(cpu_ticks "$3") - before ))
    python3 - "$work/out" "$ticks" "$TICK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
count, secs, unit = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", text).groups()
total, secs = int(count), float(secs) * {"ms": 0.001, "s": 1, "m": 60}[unit]
p50 = ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
cpu_s = int(sys.argv[2]) / float(sys.argv[3])
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {errors.group(1) if errors else 0} {cpu_s / total * 1e6:.1f} {cpu_s / secs:.3f}")
PY
}

GWPID="${gateway_pids[0]}"
GW2PID="${gateway_pids[1]}"
GW3PID="${gateway_pids[2]}"
declare -A results
measure() { # target
    case "$1" in
        public) run "http://127.0.0.1:$GW$PUBLIC_PATH" "" "$GWPID" ;;
        public_key) run "http://127.0.0.1:$GW$PUBLIC_PATH" "X-API-Key: $KEY" "$GWPID" ;;
        public_bearer) run "http://127.0.0.1:$GW$PUBLIC_PATH" "Authorization: Bearer $TOKEN" "$GWPID" ;;
        keyed) run "http://127.0.0.1:$GW$KEY_PATH" "X-API-Key: $KEY" "$GWPID" ;;
        jwt) run "http://127.0.0.1:$GW$JWT_PATH" "Authorization: Bearer $TOKEN" "$GWPID" ;;
        local) run "http://127.0.0.1:$GW$LIMITED_PATH" "X-API-Key: $KEY" "$GWPID" ;;
        redis) run "http://127.0.0.1:$GW2$LIMITED_PATH" "X-API-Key: $KEY" "$GW2PID" ;;
        public_off) run "http://127.0.0.1:$GW3$PUBLIC_PATH" "" "$GW3PID" ;;
        keyed_off) run "http://127.0.0.1:$GW3$KEY_PATH" "X-API-Key: $KEY" "$GW3PID" ;;
        jwt_off) run "http://127.0.0.1:$GW3$JWT_PATH" "Authorization: Bearer $TOKEN" "$GW3PID" ;;
    esac
}
# The gateway targets take turns going first: round r starts at the r-th,
# so no target always runs right after another one (a warm or a tired
# machine would otherwise favour one place in the order).
for r in $(seq 1 "$ROUNDS"); do
    results[direct]+="$(run "http://127.0.0.1:$UP$PUBLIC_PATH");"
    for i in "${!order[@]}"; do
        t="${order[$(( (i + r) % ${#order[@]} ))]}"
        results[$t]+="$(measure "$t");"
    done
done

python3 - "${results[direct]:-}" "${results[public]:-}" "${results[keyed]:-}" "${results[jwt]:-}" "${results[local]:-}" "${results[redis]:-}" \
    "${results[public_key]:-}" "${results[public_bearer]:-}" \
    "${results[public_off]:-}" "${results[keyed_off]:-}" "${results[jwt_off]:-}" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$THREADS" <<'PY'
import statistics, sys
names = ["direct upstream", "tollgate public route", "tollgate API-key route", "tollgate JWT route",
         "API key + local limit", "API key + Redis limit", "public + key header", "public + bearer header",
         "public, usage off", "API key, usage off", "JWT, usage off"]
runs = [[list(map(float, r.split())) for r in raw.split(";") if r.strip()] for raw in sys.argv[1:12]]
connections, duration, rounds, threads = sys.argv[12:16]
med = [[statistics.median(c) for c in zip(*target)] if target else None for target in runs]
print(f"wrk -t1 -c{connections} -d{duration}, {rounds} rounds, gateway threads {threads}, loopback")
print(f"{'target':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'gw CPU us/req':>15}{'gw busy':>9}")
for name, m in zip(names, med):
    if m is None:
        continue
    rps, p50, p99, err, cpu, busy = m
    cpu_text = f"{cpu:15.1f}{busy:9.2f}" if cpu else f"{'-':>15}{'-':>9}"
    print(f"{name:<24}{rps:>9.0f}{p50:>9.3f}{p99:>9.3f}{err:>9.0f}{cpu_text}")
def paired(a, b):
    """median over rounds of (target a / target b), req/s and CPU per request"""
    if not runs[a] or not runs[b]:
        return "not measured (TARGETS)"
    rps = statistics.median(x[0] / y[0] for x, y in zip(runs[a], runs[b]))
    cpu = statistics.median(x[4] / y[4] for x, y in zip(runs[a], runs[b])) if runs[b][0][4] else None
    spread = sorted(x[0] / y[0] for x, y in zip(runs[a], runs[b]))
    text = f"req/s {rps:.3f} (rounds {spread[0]:.2f}..{spread[-1]:.2f})"
    return text + (f", gateway CPU per request {cpu:.3f}" if cpu else "")
print(f"ratio public/direct: {paired(1, 0)}")
print(f"ratio API-key/public: {paired(2, 1)}")
print(f"ratio JWT/public: {paired(3, 1)}")
print(f"ratio local-limit/API-key: {paired(4, 2)}")
print(f"ratio Redis-limit/API-key: {paired(5, 2)}")
# Controls: the public route sent the very header the authenticated route
# gets (the gateway strips it, as it does any credential). What remains
# between the two is the check and the identity headers, not the bytes.
print(f"ratio public+key-header/public: {paired(6, 1)}")
print(f"ratio API-key/public+key-header: {paired(2, 6)}")
print(f"ratio public+bearer-header/public: {paired(7, 1)}")
print(f"ratio JWT/public+bearer-header: {paired(3, 7)}")
# Usage counting (usage.enabled) on against off, same build, same run: a
# third gateway on the same store with counting off.
print(f"ratio usage on/off, public: {paired(1, 8)}")
print(f"ratio usage on/off, API key: {paired(2, 9)}")
print(f"ratio usage on/off, JWT: {paired(3, 10)}")
PY
