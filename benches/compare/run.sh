#!/usr/bin/env bash
# Side by side on loopback: Tollgate against nginx and HAProxy (Debian's
# packages), one worker each, on the same upstream, with the same load.
#
#   benches/compare/run.sh                      # ROUNDS=5 DURATION=5s CONNECTIONS=32
#   CASES="plain key jwt" benches/compare/run.sh  # some groups only
#   TOLLGATE_BINS="before=/tmp/a after=target/release/tollgate" NO_BUILD=1 benches/compare/run.sh
#
# Groups (CASES, default all): plain, key, jwt, flood, latency, paced, tls, store.
# The plain, latency and TLS groups also run the floor under the gateway: a Pingora
# proxy with nothing of Tollgate in it (examples/bench_pingora.rs, over TLS with
# Pingora's own rustls listener), when built.
# Pinning: the upstream (nginx, `return 200`) and the load generators on
# CPU 0, the proxy under test alone on CPU 1 (taskset). Every case starts
# its proxy afresh, warms it for WARMUP, measures, and stops it; each round
# runs every case once, in an order that rotates from round to round; the
# report gives medians over rounds and, for each ratio, the median of the
# ratios within a round (pairing cancels the drift of a shared machine).
# Before each measurement the script waits (at most QUIET_WAIT seconds)
# until no compiler or linker runs on the machine.
#
# PERF=DIR samples each proxy's CPU with `perf record` (software clock,
# kernel call chains) during every closed-loop measurement and ends the
# report with where a request's CPU time goes, in microseconds: the
# kernel (by system call) against the proxy's own code and its libraries.
# Sampling costs the proxies a little: take ratios from runs without it.
#
# TOLLGATE_BINS names one or more Tollgate binaries (NAME=PATH ...): every
# Tollgate case runs for each, in the same rounds, and the report gives
# each one's ratio to the first. The aims are judged on the first.
# COMPARE (default: every group) limits that to some groups; elsewhere
# only the first binary runs.
set -euo pipefail
if [ -n "${PERF:-}" ]; then mkdir -p "$PERF" && PERF="$(cd "$PERF" && pwd)"; fi
cd "$(dirname "$0")/../.."
here=benches/compare

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CONNECTIONS="${CONNECTIONS:-32}"
RATE="${RATE:-5000}"                 # the fixed rate of the latency cases, req/s
PACE_RATE="${PACE_RATE:-1000}"       # the paced cases' rate: CPU per request of a request that comes alone
FLOOD_RATE="${FLOOD_RATE:-1000}"     # bad-signature tokens per second beside cached traffic
TOKENS="${TOKENS:-100000}"           # distinct tokens for the every-token-new cases
CLIENTS="${CLIENTS:-100000}"         # clients with keys for the store cases
QUIET_WAIT="${QUIET_WAIT:-600}"
read -r -a groups <<< "${CASES:-plain key jwt flood latency paced tls store}"
read -r -a variants <<< "${TOLLGATE_BINS:-tollgate=target/release/tollgate}"
read -r -a compare <<< "${COMPARE:-${groups[*]}}"  # groups where every binary runs
LOAD_CPU=0
PROXY_CPU=1
export TOLLGATE_PEPPER=compare-bench-pepper
export TOLLGATE_ADMIN_TOKEN=bench

want() { [[ " ${groups[*]} " == *" $1 "* ]]; }
say() { echo "== $*" >&2; }

# ---------------------------------------------------------------- tools
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v taskset >/dev/null || need_apt+=(util-linux)
if [ -n "${PERF:-}" ] && ! command -v perf >/dev/null; then need_apt+=(linux-perf); fi
if [ ${#need_apt[@]} -gt 0 ]; then
    say "installing ${need_apt[*]}"
    [ "$(id -u)" = 0 ] || { echo "need root to install ${need_apt[*]} (or install them yourself)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
OHA="${OHA:-$(command -v oha || true)}"
[ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ] && OHA="$HOME/.cargo/bin/oha"
if [ -z "$OHA" ]; then
    say "installing oha (the open-loop load generator) with cargo install oha --locked"
    cargo install oha --locked --quiet && OHA="$HOME/.cargo/bin/oha"
fi
versions() {
    echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "haproxy: $(haproxy -v | head -1 | awk '{print $3}')"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "oha: $("$OHA" --version 2>&1 | head -1 | awk '{print $2}')"
    echo "h2load: $(h2load --version | awk '{print $2}')"
    echo "openssl: $(openssl version | awk '{print $2}')"
    echo "kernel: $(uname -r), cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
}

if [ -z "${NO_BUILD:-}" ]; then
    source scripts/bootstrap
    say "building (release)"
    cargo build --release --quiet --bin tollgate --example bench_token --example bench_seed --example bench_pingora
fi
for v in "${variants[@]}"; do
    [ -x "${v#*=}" ] || { echo "no Tollgate binary at ${v#*=} (TOLLGATE_BINS)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/tollgate-compare.XXXXXX)"
mkdir -p "$work/tmp"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); NG=$(port); NGTLS=$(port); HA=$(port); HAKEY=$(port); HAJWT=$(port); PG=$(port); PGTLS=$(port)
pingora_bin=target/release/examples/bench_pingora
GW=$(port); GWTLS=$(port); ADMIN=$(port); METRICS=$(port)
ISS="http://127.0.0.1:$GW"
AUD=tollgate

fill() { # template > file
    sed -e "s|@WORK@|$work|g" -e "s|@UP@|$UP|g" -e "s|@PORT@|${2:-}|g" -e "s|@TLS@|${3:-}|g" \
        -e "s|@KEYPORT@|$HAKEY|g" -e "s|@JWTPORT@|$HAJWT|g" -e "s|@ISS@|$ISS|g" -e "s|@AUD@|$AUD|g" \
        -e "s|@CERT@|$work/cert.pem|g" -e "s|@KEY@|$work/key.pem|g" "$1"
}

# ------------------------------------------------------------ quiet machine
# A compile beside a measurement moves it by far more than the differences
# measured: wait (bounded) until none runs.
# (by command line: pgrep matches a process name of at most 15 characters)
busy_tools='^([^ ]*/)?(rustc|cc|cc1|cc1plus|c\+\+|gcc|g\+\+|clang|ld|ld\.bfd|ld\.gold|ld\.lld|lld|mold|collect2|clippy-driver)( |$)'
wait_quiet() {
    local waited=0
    while pgrep -f "$busy_tools" >/dev/null 2>&1; do
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            echo "WARNING: a compiler or linker is still running after ${QUIET_WAIT}s; measuring anyway" >&2
            echo "warning compile-during-measurement" >> "$work/warnings"
            return
        fi
        [ "$waited" = 0 ] && say "waiting for compilers/linkers to finish (up to ${QUIET_WAIT}s)"
        sleep 2; waited=$((waited + 2))
    done
}

# ------------------------------------------------------------ processes
# a process and its children (nginx's worker)
family() { echo "$1" $(pgrep -P "$1" || true); }
# CPU ticks (user + system) of a process and its children
cpu_ticks() {
    local total=0 p
    for p in $(family "$1"); do
        [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}
TICK=$(getconf CLK_TCK)

wait_http() { # url [curl args...]: any HTTP answer within 10 s
    local url=$1; shift
    for _ in $(seq 1 200); do
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$@" "$url" 2>/dev/null || true)
        [ -n "$code" ] && [ "$code" != 000 ] && return 0
        sleep 0.05
    done
    return 1
}

PROXY_PID=
stop_proxy() {
    [ -n "$PROXY_PID" ] || return 0
    kill "$PROXY_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
}
start_nginx() {
    taskset -c "$PROXY_CPU" nginx -p "$work" -c "$work/proxy.nginx.conf" >"$work/nginx.out" 2>&1 &
    PROXY_PID=$!; pids+=("$PROXY_PID")
    wait_http "http://127.0.0.1:$NG/" || { echo "nginx did not start: $(cat "$work/nginx.out" "$work/proxy.error.log" 2>/dev/null)" >&2; exit 1; }
}
start_pingora() {
    taskset -c "$PROXY_CPU" "$pingora_bin" "127.0.0.1:$PG" "127.0.0.1:$UP" \
        "127.0.0.1:$PGTLS" "$work/cert.pem" "$work/key.pem" >"$work/pingora.out" 2>&1 &
    PROXY_PID=$!; pids+=("$PROXY_PID")
    wait_http "http://127.0.0.1:$PG/" || { echo "bench_pingora did not start: $(cat "$work/pingora.out")" >&2; exit 1; }
}
start_haproxy() {
    taskset -c "$PROXY_CPU" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.out" 2>&1 &
    PROXY_PID=$!; pids+=("$PROXY_PID")
    wait_http "http://127.0.0.1:$HA/" || { echo "haproxy did not start: $(cat "$work/haproxy.out")" >&2; exit 1; }
}
start_tollgate() { # binary config
    taskset -c "$PROXY_CPU" "$1" serve --config "$2" >"$work/tollgate.out" 2>&1 &
    PROXY_PID=$!; pids+=("$PROXY_PID")
    for _ in $(seq 1 200); do
        curl -fsS --max-time 1 "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && wait_http "http://127.0.0.1:$GW/" && return 0
        sleep 0.05
    done
    echo "tollgate did not start: $(cat "$work/tollgate.out")" >&2; exit 1
}

# ------------------------------------------------------------ load
# wrk, closed loop: "req/s p50_ms p99_ms non2xx requests cpu_us_per_request"
wrk_run() { # url duration [wrk args...]
    # options before "--" go to wrk, the rest to its script (after the URL)
    local url=$1 dur=$2; shift 2
    local opts=() sargs=() before after
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && shift && sargs=("$@")
    before=$(cpu_ticks "$PROXY_PID")
    local sampler=
    if [ -n "${PERF:-}" ] && [ "$dur" = "$DURATION" ]; then
        # the proxy and its children (nginx's worker), for the whole run
        perf record -q -e cpu-clock -F 1999 -g -o "$PERF/$PERF_TAG.data" \
            -p "$(family "$PROXY_PID" | tr ' ' ,)" -- sleep "${dur%s}" >/dev/null 2>&1 &
        sampler=$!
    fi
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$dur" --latency "${opts[@]}" "$url" "${sargs[@]}" > "$work/wrk.out" 2>&1 || true
    after=$(cpu_ticks "$PROXY_PID")
    [ -n "$sampler" ] && wait "$sampler" 2>/dev/null || true
    python3 - "$work/wrk.out" "$((after - before))" "$TICK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
try:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    p50 = ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))
except AttributeError:
    sys.stderr.write("wrk failed:\n" + text)
    print("0 0 0 0 0 0"); sys.exit()
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
err = int(errors.group(1)) if errors else 0
if sock:
    err += sum(int(x) for x in sock.groups())
cpu_us = int(sys.argv[2]) / float(sys.argv[3]) * 1e6 / max(total, 1)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {err} {total} {cpu_us:.1f}")
PY
}
# oha at a fixed rate (open loop, latency measured from each request's
# scheduled time): "p50_ms p99_ms p999_ms req/s non2xx cpu_us_per_request"
oha_run() { # url rate duration [oha args...]
    local url=$1 rate=$2 dur=$3 before after; shift 3
    before=$(cpu_ticks "$PROXY_PID")
    taskset -c "$LOAD_CPU" "$OHA" --no-tui --output-format json -z "$dur" -q "$rate" --latency-correction -c "$CONNECTIONS" "$@" "$url" \
        > "$work/oha.json" 2> "$work/oha.err" || true
    after=$(cpu_ticks "$PROXY_PID")
    python3 - "$work/oha.json" "$((after - before))" "$TICK" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    sys.stderr.write("oha failed: " + open(sys.argv[1]).read()[:500] + "\n")
    print("0 0 0 0 0 0"); sys.exit()
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(d.get("errorDistribution", {}).values())
answered = sum(codes.values())
cpu_us = int(sys.argv[2]) / float(sys.argv[3]) * 1e6 / max(answered, 1)
print(f"{p['p50']*1000:.3f} {p['p99']*1000:.3f} {p['p99.9']*1000:.3f} {d['summary']['requestsPerSec']:.0f} {bad} {cpu_us:.1f}")
PY
}
# HTTP/2 over TLS, keep-alive: "req/s"
h2_run() { # url duration
    local secs=${2%s}
    taskset -c "$LOAD_CPU" h2load -t1 -c"$CONNECTIONS" -m10 -D "$secs" --warm-up-time=1 "$1" > "$work/h2.out" 2>&1 || true
    python3 - "$work/h2.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
s = re.search(r"status codes: (\d+) 2xx", text)
if not m:
    sys.stderr.write("h2load failed:\n" + text[-800:]); print("0 0"); sys.exit()
req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
print(f"{float(m.group(1)):.0f} {int(req.group(2)) - int(req.group(3)) if req else 0}")
PY
}

record() { echo "$round $1 $2 $3" >> "$work/results"; } # case variant "values"

# ------------------------------------------------------------ set-up
say "set-up in $work"
versions | tee "$work/versions" >&2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

fill "$here/upstream.nginx.conf" > "$work/upstream.nginx.conf"
taskset -c "$LOAD_CPU" nginx -p "$work" -c "$work/upstream.nginx.conf" >"$work/upstream.out" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$UP/" || { echo "upstream did not start: $(cat "$work/upstream.out")" >&2; exit 1; }
fill "$here/proxy.nginx.conf" "$NG" "$NGTLS" > "$work/proxy.nginx.conf"

tollgate_config() { # db [extra store yaml]
cat <<YAML
server:
  listen:
    - "127.0.0.1:$GW"
    - { address: "127.0.0.1:$GWTLS", tls: { certificates: [{ cert: "$work/cert.pem", key: "$work/key.pem" }] }, http2: true }
  threads: 1
admin: { listen: "127.0.0.1:$ADMIN" }
metrics: { listen: "127.0.0.1:$METRICS" }
store: { url: "sqlite://$1", cache: { ttl: 300s${2:-} } }
auth:
  tokens: { issuer: "$ISS", audience: $AUD }
logging: { level: error }
services:
  up: { upstreams: ["127.0.0.1:$UP"] }
routes:
  - { name: keyed, match: { path_prefix: /key }, service: up, auth: [api_key] }
  - { name: jwt, match: { path_prefix: /jwt }, service: up, auth: [jwt] }
  - { name: public, match: { path_prefix: / }, service: up, auth: public }
YAML
}
tollgate_config "$work/tollgate.db" > "$work/tollgate.yaml"
first_bin="${variants[0]#*=}"
start_tollgate "$first_bin" "$work/tollgate.yaml"
admin() { curl -fsS -H "Authorization: Bearer bench" -H "Content-Type: application/json" "http://127.0.0.1:$ADMIN/admin/v1$1" -d "$2"; }
field() { python3 -c "import json,sys; v=json.load(sys.stdin); print(eval('v' + sys.argv[1]))" "$1"; }
keyed=$(admin /clients '{"name":"bench-key","auth_type":"api_key"}')
KEY=$(echo "$keyed" | field '["api_key"]["key"]')
KEYCLIENT=$(echo "$keyed" | field '["id"]')
admin /subscriptions "{\"client_id\":\"$KEYCLIENT\",\"service\":\"up\"}" >/dev/null
oauth=$(admin /clients '{"name":"bench-jwt","auth_type":"oauth2"}' | field '["id"]')
admin /subscriptions "{\"client_id\":\"$oauth\",\"service\":\"up\"}" >/dev/null
stop_proxy
tokbin=target/release/examples/bench_token
TOKEN=$("$tokbin" "$work/tollgate.db" "$ISS" "$AUD" "$oauth")
say "minting $TOKENS distinct tokens"
BENCH_TOKENS="$TOKENS" BENCH_TOKEN_KEY="$work/jwt.key.pem" "$tokbin" "$work/tollgate.db" "$ISS" "$AUD" "$oauth" > "$work/tokens"
openssl pkey -in "$work/jwt.key.pem" -pubout -out "$work/jwt.pub.pem" 2>/dev/null
# a bad signature: one character of the signature's middle changed, so
# the signature decodes to 64 bytes and is checked in full
python3 - "$work/tokens" "$work/bad-tokens" <<'PY'
import sys
out = open(sys.argv[2], "w")
for line in open(sys.argv[1]):
    t = line.strip()
    if not t:
        continue
    h, p, s = t.split(".")
    i = len(s) // 2
    s = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
    out.write(f"{h}.{p}.{s}\n")
PY
BAD=$(head -1 "$work/bad-tokens")
echo "$KEY $KEYCLIENT" > "$work/keys.map"
fill "$here/haproxy.cfg" "$HA" > "$work/haproxy.cfg"
haproxy -c -q -f "$work/haproxy.cfg" || { echo "haproxy refused its configuration" >&2; exit 1; }

# checks: every proxy answers 200 on its cases, and refuses what it must
check() { # what expected url [curl args]
    local what=$1 want=$2 url=$3; shift 3
    local got
    got=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url")
    [ "$got" = "$want" ] || { echo "check failed: $what answered $got, not $want" >&2; exit 1; }
}
start_nginx
check "nginx plain" 200 "http://127.0.0.1:$NG/pub/"
check "nginx TLS" 200 "https://127.0.0.1:$NGTLS/pub/"
check "nginx HTTP/2" 200 "https://127.0.0.1:$NGTLS/pub/" --http2
stop_proxy
start_haproxy
check "haproxy plain" 200 "http://127.0.0.1:$HA/pub/"
check "haproxy key" 200 "http://127.0.0.1:$HAKEY/key/" -H "X-API-Key: $KEY"
check "haproxy no key" 401 "http://127.0.0.1:$HAKEY/key/"
check "haproxy jwt" 200 "http://127.0.0.1:$HAJWT/jwt/" -H "Authorization: Bearer $TOKEN"
check "haproxy bad jwt" 401 "http://127.0.0.1:$HAJWT/jwt/" -H "Authorization: Bearer $BAD"
stop_proxy
if [ -x "$pingora_bin" ]; then
    start_pingora
    check "bare Pingora plain" 200 "http://127.0.0.1:$PG/pub/"
    check "bare Pingora TLS" 200 "https://127.0.0.1:$PGTLS/pub/" --http1.1
    check "bare Pingora HTTP/2" 200 "https://127.0.0.1:$PGTLS/pub/" --http2
    stop_proxy
fi
for v in "${variants[@]}"; do
    start_tollgate "${v#*=}" "$work/tollgate.yaml"
    check "${v%%=*} public" 200 "http://127.0.0.1:$GW/pub/"
    check "${v%%=*} key" 200 "http://127.0.0.1:$GW/key/" -H "X-API-Key: $KEY"
    check "${v%%=*} jwt" 200 "http://127.0.0.1:$GW/jwt/" -H "Authorization: Bearer $TOKEN"
    check "${v%%=*} bad jwt" 401 "http://127.0.0.1:$GW/jwt/" -H "Authorization: Bearer $BAD"
    check "${v%%=*} TLS" 200 "https://127.0.0.1:$GWTLS/pub/"
    check "${v%%=*} HTTP/2" 200 "https://127.0.0.1:$GWTLS/pub/" --http2
    stop_proxy
done

# ------------------------------------------------------------ cases
# Each case: a proxy started afresh, a warm-up, one measurement.
cycle=(-s "$here/cycle.lua")
run_case() { # case variant
    local c=$1 v=$2 bin=${2#*=} name=${2%%=*}
    PERF_TAG="$c.$name.$round"
    wait_quiet
    case "$c" in
        plain_nginx) start_nginx; wrk_run "http://127.0.0.1:$NG/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(wrk_run "http://127.0.0.1:$NG/pub/" "$DURATION")" ;;
        plain_haproxy) start_haproxy; wrk_run "http://127.0.0.1:$HA/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(wrk_run "http://127.0.0.1:$HA/pub/" "$DURATION")" ;;
        plain_pingora) start_pingora; wrk_run "http://127.0.0.1:$PG/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(wrk_run "http://127.0.0.1:$PG/pub/" "$DURATION")" ;;
        key_haproxy) start_haproxy; wrk_run "http://127.0.0.1:$HAKEY/key/" "$WARMUP" -H "X-API-Key: $KEY" >/dev/null
            record "$c" - "$(wrk_run "http://127.0.0.1:$HAKEY/key/" "$DURATION" -H "X-API-Key: $KEY")" ;;
        jwtnew_haproxy) start_haproxy; wrk_run "http://127.0.0.1:$HA/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(wrk_run "http://127.0.0.1:$HAJWT/jwt/" "$DURATION" "${cycle[@]}" -- "$work/tokens" Authorization "Bearer ")" ;;
        plain_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/pub/" "$WARMUP" >/dev/null
            record "$c" "$name" "$(wrk_run "http://127.0.0.1:$GW/pub/" "$DURATION")" ;;
        key_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/key/" "$WARMUP" -H "X-API-Key: $KEY" >/dev/null
            record "$c" "$name" "$(wrk_run "http://127.0.0.1:$GW/key/" "$DURATION" -H "X-API-Key: $KEY")" ;;
        jwtwarm_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/jwt/" "$WARMUP" -H "Authorization: Bearer $TOKEN" >/dev/null
            record "$c" "$name" "$(wrk_run "http://127.0.0.1:$GW/jwt/" "$DURATION" -H "Authorization: Bearer $TOKEN")" ;;
        jwtnew_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/pub/" "$WARMUP" >/dev/null
            record "$c" "$name" "$(wrk_run "http://127.0.0.1:$GW/jwt/" "$DURATION" "${cycle[@]}" -- "$work/tokens" Authorization "Bearer ")" ;;
        badflood_tollgate) # closed loop, distinct bad signatures only: what one costs
            start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/pub/" "$WARMUP" >/dev/null
            record "$c" "$name" "$(wrk_run "http://127.0.0.1:$GW/jwt/" "$DURATION" "${cycle[@]}" -- "$work/bad-tokens" Authorization "Bearer ")" ;;
        cachedalone_tollgate|cachedflood_tollgate|cacheddistinct_tollgate|cachedpublic_tollgate)
            # cached tokens alone, or beside FLOOD_RATE a second of: one bad
            # token (oha), distinct bad tokens (flood.py), or public requests
            # (oha; what any stream at that rate costs, the control)
            start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/jwt/" "$WARMUP" -H "Authorization: Bearer $TOKEN" >/dev/null
            local flood= flood_for="$((${DURATION%s} + 1))"
            case "$c" in
                cachedflood_tollgate)
                    taskset -c "$LOAD_CPU" "$OHA" --no-tui --output-format json -z "${flood_for}s" -q "$FLOOD_RATE" -c 8 \
                        -H "Authorization: Bearer $BAD" "http://127.0.0.1:$GW/jwt/" > "$work/flood.json" 2>/dev/null & ;;
                cachedpublic_tollgate)
                    taskset -c "$LOAD_CPU" "$OHA" --no-tui --output-format json -z "${flood_for}s" -q "$FLOOD_RATE" -c 8 \
                        "http://127.0.0.1:$GW/pub/" > "$work/flood.json" 2>/dev/null & ;;
                cacheddistinct_tollgate)
                    taskset -c "$LOAD_CPU" python3 "$here/flood.py" "127.0.0.1:$GW" /jwt/ "$work/bad-tokens" "$FLOOD_RATE" "$flood_for" 8 \
                        > "$work/flood.json" 2>/dev/null & ;;
            esac
            if [ "$c" != cachedalone_tollgate ]; then
                flood=$!
                sleep 0.5
            fi
            record "$c" "$name" "$(wrk_run "http://127.0.0.1:$GW/jwt/" "$DURATION" -H "Authorization: Bearer $TOKEN")"
            [ -n "$flood" ] && wait "$flood" 2>/dev/null || true ;;
        pace_nginx) start_nginx; wrk_run "http://127.0.0.1:$NG/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(oha_run "http://127.0.0.1:$NG/pub/" "$PACE_RATE" "$DURATION")" ;;
        pace_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/pub/" "$WARMUP" >/dev/null
            record "$c" "$name" "$(oha_run "http://127.0.0.1:$GW/pub/" "$PACE_RATE" "$DURATION")" ;;
        lat_nginx) start_nginx; wrk_run "http://127.0.0.1:$NG/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(oha_run "http://127.0.0.1:$NG/pub/" "$RATE" "$DURATION")" ;;
        lat_haproxy) start_haproxy; wrk_run "http://127.0.0.1:$HA/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(oha_run "http://127.0.0.1:$HA/pub/" "$RATE" "$DURATION")" ;;
        lat_pingora) start_pingora; wrk_run "http://127.0.0.1:$PG/pub/" "$WARMUP" >/dev/null
            record "$c" - "$(oha_run "http://127.0.0.1:$PG/pub/" "$RATE" "$DURATION")" ;;
        latkey_haproxy) start_haproxy; wrk_run "http://127.0.0.1:$HAKEY/key/" "$WARMUP" -H "X-API-Key: $KEY" >/dev/null
            record "$c" - "$(oha_run "http://127.0.0.1:$HAKEY/key/" "$RATE" "$DURATION" -H "X-API-Key: $KEY")" ;;
        lat_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/pub/" "$WARMUP" >/dev/null
            record "$c" "$name" "$(oha_run "http://127.0.0.1:$GW/pub/" "$RATE" "$DURATION")" ;;
        latkey_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/key/" "$WARMUP" -H "X-API-Key: $KEY" >/dev/null
            record "$c" "$name" "$(oha_run "http://127.0.0.1:$GW/key/" "$RATE" "$DURATION" -H "X-API-Key: $KEY")" ;;
        latjwt_tollgate) start_tollgate "$bin" "$work/tollgate.yaml"; wrk_run "http://127.0.0.1:$GW/jwt/" "$WARMUP" -H "Authorization: Bearer $TOKEN" >/dev/null
            record "$c" "$name" "$(oha_run "http://127.0.0.1:$GW/jwt/" "$RATE" "$DURATION" -H "Authorization: Bearer $TOKEN")" ;;
        tls_*|hs_*|h2_*)
            local url
            case "${c#*_}" in
                nginx) start_nginx; url="https://127.0.0.1:$NGTLS/pub/" ;;
                pingora) start_pingora; url="https://127.0.0.1:$PGTLS/pub/" ;;
                *) start_tollgate "$bin" "$work/tollgate.yaml"; url="https://127.0.0.1:$GWTLS/pub/" ;;
            esac
            case "${c%_*}" in
                tls) wrk_run "$url" "$WARMUP" >/dev/null; record "$c" "$name" "$(wrk_run "$url" "$DURATION")" ;;
                hs) wrk_run "$url" "$WARMUP" -H "Connection: close" >/dev/null
                    record "$c" "$name" "$(wrk_run "$url" "$DURATION" -H "Connection: close")" ;;
                h2) record "$c" "$name" "$(h2_run "$url" "$DURATION")" ;;
            esac ;;
        *) echo "unknown case $c" >&2; exit 1 ;;
    esac
    stop_proxy
}

cases=()
if want plain; then
    cases+=(plain_nginx plain_haproxy plain_tollgate)
    if [ -x "$pingora_bin" ]; then cases+=(plain_pingora)
    else say "examples/bench_pingora is not built: no bare Pingora case (cargo build --release --example bench_pingora)"; fi
fi
want key && cases+=(key_haproxy key_tollgate)
want jwt && cases+=(jwtwarm_tollgate jwtnew_haproxy jwtnew_tollgate)
# OHA=/bin/true (to save installing oha) leaves out what needs oha, and says so
have_oha() { "$OHA" --version 2>/dev/null | grep -q '^oha'; }
if want flood; then
    cases+=(badflood_tollgate cachedalone_tollgate cacheddistinct_tollgate)
    if have_oha; then cases+=(cachedflood_tollgate cachedpublic_tollgate)
    else say "OHA=$OHA is not oha: no flood of one bad token, and no control flood"; fi
fi
if want latency || want paced; then
    if ! have_oha; then say "OHA=$OHA is not oha: no latency or paced cases"
    else
        want latency && cases+=(lat_nginx lat_haproxy lat_tollgate latkey_haproxy latkey_tollgate latjwt_tollgate)
        want latency && [ -x "$pingora_bin" ] && cases+=(lat_pingora)
        want paced && cases+=(pace_nginx pace_tollgate)
    fi
fi
want tls && cases+=(tls_nginx tls_tollgate hs_nginx hs_tollgate h2_nginx h2_tollgate)
want tls && [ -x "$pingora_bin" ] && cases+=(tls_pingora hs_pingora h2_pingora)
# each Tollgate case once per binary (only the first outside COMPARE)
group_of() {
    case "$1" in
        plain_*) echo plain ;; key_*) echo key ;; jwt*) echo jwt ;; badflood_*|cached*) echo flood ;;
        lat*) echo latency ;; pace_*) echo paced ;; tls_*|hs_*|h2_*) echo tls ;;
    esac
}
runs=()
for c in "${cases[@]}"; do
    if [[ "$c" == *_tollgate ]]; then
        if [[ " ${compare[*]} " == *" $(group_of "$c") "* ]]; then
            for v in "${variants[@]}"; do runs+=("$c $v"); done
        else
            runs+=("$c ${variants[0]}")
        fi
    else runs+=("$c -"); fi
done
store_variants=("${variants[@]}")
[[ " ${compare[*]} " == *" store "* ]] || store_variants=("${variants[0]}")

: > "$work/results"
if [ ${#runs[@]} -gt 0 ]; then
    for round in $(seq 1 "$ROUNDS"); do
        say "round $round of $ROUNDS (${#runs[@]} cases)"
        for i in "${!runs[@]}"; do
            read -r c v <<< "${runs[$(( (i + round - 1) % ${#runs[@]} ))]}"
            run_case "$c" "$v"
        done
    done
fi

# ------------------------------------------------------------ store cases
# 100k API-key clients in the store: start-up to ready (process start to
# the first 200 of /readyz and of the proxy port), and the resident memory
# after every key has been checked once (all of them cached).
if want store; then
    say "seeding $CLIENTS clients"
    seeddb="$work/seed.db"
    target/release/examples/bench_seed "$seeddb" "$TOLLGATE_PEPPER" "$CLIENTS" up "$work/seed-keys" | sqlite3 "$seeddb"
    tollgate_config "$seeddb" ", max_entries: $((CLIENTS * 2))" > "$work/seed.yaml"
    for round in $(seq 1 "$ROUNDS"); do
        for v in "${store_variants[@]}"; do
            wait_quiet
            name=${v%%=*}
            ms=$(python3 - "${v#*=}" "$work/seed.yaml" "$ADMIN" "$GW" "$PROXY_CPU" <<'PY'
import socket, subprocess, sys, time
binary, config, admin, gw, cpu = sys.argv[1:6]
def ok(port, path):
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=1)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        try: s.close()
        except Exception: pass
t0 = time.monotonic()
p = subprocess.Popen(["taskset", "-c", cpu, binary, "serve", "--config", config],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ready = None
while time.monotonic() - t0 < 30:
    if ok(admin, "/readyz") and ok(gw, "/pub/"):
        ready = time.monotonic() - t0
        break
    time.sleep(0.002)
p.terminate()
try: p.wait(5)
except subprocess.TimeoutExpired: p.kill()
print(f"{ready * 1000:.1f}" if ready is not None else "0")
PY
)
            record startup "$name" "$ms"
        done
    done
    # in every round, each variant fresh: one round moves by about 10 MiB
    keyed_count() { curl -fsS --max-time 2 "http://127.0.0.1:$METRICS/metrics" 2>/dev/null \
        | awk '/^tollgate_requests_total\{route="keyed"/ {n += $2} END {print n + 0}'; }
    proxy_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$PROXY_PID/status"; }
    first_key=$(head -1 "$work/seed-keys")
    for round in $(seq 1 "$ROUNDS"); do
        for v in "${store_variants[@]}"; do
            wait_quiet
            name=${v%%=*}
            start_tollgate "${v#*=}" "$work/seed.yaml"
            rss_before=$(proxy_kb VmRSS)
            # every key once, then all again (the second pass is served from
            # the cache): wrk cycles through the keys, and is stopped once the
            # gateway has counted that many answers on the route (wrk itself
            # would wait out its whole duration)
            taskset -c "$LOAD_CPU" wrk -t1 -c8 -d600s -s "$here/cycle.lua" "http://127.0.0.1:$GW/key/" "$work/seed-keys" X-API-Key > "$work/rss-wrk.out" 2>&1 &
            wrkpid=$!; pids+=("$wrkpid")
            t0=$(date +%s)
            while [ "$(keyed_count)" -lt "$((CLIENTS * 2))" ] && [ $(( $(date +%s) - t0 )) -lt 600 ]; do sleep 0.5; done
            secs=$(( $(date +%s) - t0 ))
            kill "$wrkpid" 2>/dev/null || true; wait "$wrkpid" 2>/dev/null || true
            out1="$(keyed_count) $secs"
            out2=$(curl -fsS "http://127.0.0.1:$METRICS/metrics" | awk '/^tollgate_cache_lookups_total\{cache="api_key",result="miss"\}/ {print $2}')
            rss=$(proxy_kb VmRSS)
            hwm=$(proxy_kb VmHWM)
            # then 10 s of a trickle (one cached request every half second),
            # in which the allocator hands back what the burst freed
            for _ in $(seq 1 20); do
                curl -fsS -o /dev/null --max-time 1 -H "X-API-Key: $first_key" "http://127.0.0.1:$GW/key/" || true
                sleep 0.5
            done
            settled=$(proxy_kb VmRSS)
            record rss "$name" "$rss_before $rss $hwm $out1 $out2 $settled"
            stop_proxy
        done
    done
fi

# ------------------------------------------------------------ report
python3 - "$work/results" "$work/versions" "${variants[*]}" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$RATE" "$FLOOD_RATE" "$TOKENS" "$CLIENTS" "$([ -f "$work/warnings" ] && wc -l < "$work/warnings" || echo 0)" "$PACE_RATE" <<'PY'
import statistics, sys
from collections import defaultdict
path, versions, variants, rounds, duration, conns, rate, flood_rate, tokens, clients, warnings, pace_rate = sys.argv[1:13]
names = [v.split("=")[0] for v in variants.split()]
first = names[0]
data = defaultdict(dict)  # (case, variant) -> {round: [values]}
for line in open(path):
    parts = line.split()
    if len(parts) < 4:
        continue
    r, case, var = int(parts[0]), parts[1], parts[2]
    data[(case, var)][r] = [float(x) for x in parts[3:]]
def key(case, var):
    return (case, first if case.endswith("tollgate") and var is None else (var or "-"))
def series(case, var=None, i=0):
    d = data.get(key(case, var), {})
    return {r: v[i] for r, v in d.items() if len(v) > i}
def med(case, var=None, i=0):
    s = series(case, var, i)
    return statistics.median(s.values()) if s else None
def ratio(a, b, i=0, va=None, vb=None):
    sa, sb = series(a, va, i), series(b, vb, i)
    rs = [sa[r] / sb[r] for r in sa if r in sb and sb[r]]
    return (statistics.median(rs), min(rs), max(rs)) if rs else None
print()
print(open(versions).read().strip())
print(f"wrk -t1 -c{conns} -d{duration}, {rounds} rounds; latency: oha -q {rate} -c{conns} -z{duration} --latency-correction;")
print(f"proxies on CPU 1 (one worker), upstream and load on CPU 0; tokens {tokens}, store clients {clients}, flood {flood_rate}/s")
if int(warnings):
    print(f"WARNING: {warnings} measurement(s) ran beside a compiler (see above)")
print()
rows = [
    ("plain proxy: nginx", "plain_nginx"), ("plain proxy: HAProxy", "plain_haproxy"),
    ("plain proxy: bare Pingora (the floor)", "plain_pingora"), ("plain proxy: Tollgate public", "plain_tollgate"),
    ("API key: HAProxy map", "key_haproxy"), ("API key: Tollgate", "key_tollgate"),
    ("JWT warm: Tollgate", "jwtwarm_tollgate"),
    ("JWT every token new: HAProxy jwt_verify", "jwtnew_haproxy"), ("JWT every token new: Tollgate", "jwtnew_tollgate"),
    ("bad-signature flood: Tollgate", "badflood_tollgate"),
    ("cached JWT alone: Tollgate", "cachedalone_tollgate"), (f"cached JWT beside {flood_rate}/s bad: Tollgate", "cachedflood_tollgate"),
    (f"cached JWT beside {flood_rate}/s distinct bad: Tollgate", "cacheddistinct_tollgate"),
    (f"cached JWT beside {flood_rate}/s public: Tollgate", "cachedpublic_tollgate"),
    ("TLS keep-alive: nginx", "tls_nginx"), ("TLS keep-alive: bare Pingora (the floor)", "tls_pingora"),
    ("TLS keep-alive: Tollgate", "tls_tollgate"),
    ("TLS full handshakes: nginx", "hs_nginx"), ("TLS full handshakes: bare Pingora (the floor)", "hs_pingora"),
    ("TLS full handshakes: Tollgate", "hs_tollgate"),
]
print(f"{'case':<50}{'variant':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU us/req':>12}")
for label, case in rows:
    for var in (names if case.endswith("tollgate") else ["-"]):
        if not data.get((case, var)):
            continue
        m = [med(case, var, i) for i in range(6)]
        print(f"{label:<50}{var:<10}{m[0]:>9.0f}{m[1]:>9.3f}{m[2]:>9.3f}{m[3]:>8.0f}{m[5]:>12.1f}")
for label, case in [("HTTP/2 over TLS: nginx", "h2_nginx"), ("HTTP/2 over TLS: bare Pingora (the floor)", "h2_pingora"),
                    ("HTTP/2 over TLS: Tollgate", "h2_tollgate")]:
    for var in (names if case.endswith("tollgate") else ["-"]):
        if data.get((case, var)):
            print(f"{label:<50}{var:<10}{med(case, var, 0):>9.0f}{'':>18}{med(case, var, 1):>8.0f}  (h2load -c{conns} -m10)")
lat = [("nginx public", "lat_nginx"), ("HAProxy public", "lat_haproxy"), ("bare Pingora (the floor)", "lat_pingora"),
       ("Tollgate public", "lat_tollgate"),
       ("HAProxy API key", "latkey_haproxy"), ("Tollgate API key", "latkey_tollgate"), ("Tollgate JWT warm", "latjwt_tollgate"),
       (f"nginx public at {pace_rate} req/s", "pace_nginx"), (f"Tollgate public at {pace_rate} req/s", "pace_tollgate")]
if any(data.get((c, v)) for _, c in lat for v in names + ["-"]):
    print()
    print(f"{'latency at ' + rate + ' req/s':<50}{'variant':<10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'req/s':>8}{'errors':>8}{'CPU us/req':>12}")
    for label, case in lat:
        for var in (names if case.endswith("tollgate") else ["-"]):
            if data.get((case, var)):
                m = [med(case, var, i) for i in range(6)]
                print(f"{label:<50}{var:<10}{m[0]:>9.3f}{m[1]:>9.3f}{m[2]:>10.3f}{m[3]:>8.0f}{m[4]:>8.0f}{m[5]:>12.1f}")
if any(data.get(("startup", v)) for v in names) or any(data.get(("rss", v)) for v in names):
    print()
    for var in names:
        if data.get(("startup", var)):
            s = sorted(series("startup", var).values())
            print(f"start-up to ready, {clients} clients in the store [{var}]: median {statistics.median(s):.0f} ms (rounds {s[0]:.0f}..{s[-1]:.0f})")
        if data.get(("rss", var)):
            # medians of rounds, in MiB (requests and lookups: of the first round)
            m = [med("rss", var, i) / 1024 for i in range(3)] + [med("rss", var, 6) / 1024]
            cached = sorted(series("rss", var, 1).values())
            v = data[("rss", var)][min(data[("rss", var)])]
            print(f"RSS [{var}]: {m[0]:.1f} MiB at start, {m[1]:.1f} MiB with {clients} clients and keys cached "
                  f"(rounds {cached[0]/1024:.1f}..{cached[-1]/1024:.1f}; peak {m[2]:.1f} MiB), {m[3]:.1f} MiB after 10 s more; "
                  f"{v[3]:.0f} requests in {v[4]:.0f} s, {v[5]:.0f} store lookups (cache misses)")
# ratios of each variant to the first, per Tollgate case
if len(names) > 1:
    print()
    for case in sorted({c for c, v in data if c.endswith("tollgate") or c in ("startup",)}):
        for var in names[1:]:
            i = 0
            r = ratio(case, case, i, var, first)
            if r:
                what = "p50" if case.startswith(("lat", "pace")) else ("ms" if case == "startup" else "req/s")
                cpu = ratio(case, case, 5, var, first) if not case.startswith(("lat", "h2", "startup")) else None
                extra = f", CPU/req {cpu[0]:.3f}" if cpu else ""
                print(f"{case:<24} {var}/{first}: {what} {r[0]:.3f} (rounds {r[1]:.2f}..{r[2]:.2f}){extra}")
# aims, on the first variant
print()
print(f"{'aim':<58}{'measured':>22}  result")
def aim(text, value, ok, fmt):
    if value is None:
        print(f"{text:<58}{'not measured':>22}  -")
    else:
        print(f"{text:<58}{fmt.format(value):>22}  {'PASS' if ok(value) else 'MISS'}")
r = ratio("plain_tollgate", "plain_nginx", 0, first, "-")
aim("Tollgate public >= 0.75x nginx plain", r and r[0], lambda x: x >= 0.75, "{:.3f}x")
r = ratio("plain_pingora", "plain_nginx")
aim("(no aim) bare Pingora / nginx plain", r and r[0], lambda x: True, "{:.3f}x")
r = ratio("plain_tollgate", "plain_pingora", 0, first, "-")
aim("(no aim) Tollgate public / bare Pingora", r and r[0], lambda x: True, "{:.3f}x")
r = ratio("key_tollgate", "plain_tollgate", 0, first, first)
aim("API key >= 0.95x Tollgate public", r and r[0], lambda x: x >= 0.95, "{:.3f}x")
r = ratio("jwtwarm_tollgate", "plain_tollgate", 0, first, first)
aim("JWT warm >= 0.95x Tollgate public", r and r[0], lambda x: x >= 0.95, "{:.3f}x")
r = ratio("jwtnew_tollgate", "jwtnew_haproxy", 0, first, "-")
aim("ES256 every token new >= 1.5x HAProxy jwt_verify", r and r[0], lambda x: x >= 1.5, "{:.3f}x")
bad, cold = med("badflood_tollgate", first, 5), med("jwtnew_tollgate", first, 5)
aim("bad signature costs <= a cold verify (CPU us/req)", bad / cold if bad and cold else None, lambda x: x <= 1.0,
    f"{bad or 0:.0f} vs {cold or 0:.0f} us" + " ({:.2f}x)")
r = ratio("cachedflood_tollgate", "cachedalone_tollgate", 0, first, first)
aim(f"cached requests beside a {flood_rate}/s bad flood >= 0.90x", r and r[0], lambda x: x >= 0.90, "{:.3f}x")
r = ratio("cacheddistinct_tollgate", "cachedalone_tollgate", 0, first, first)
aim(f"  the same, every bad token distinct", r and r[0], lambda x: x >= 0.90, "{:.3f}x")
r = ratio("cachedpublic_tollgate", "cachedalone_tollgate", 0, first, first)
aim(f"(control) beside {flood_rate}/s public requests", r and r[0], lambda x: True, "{:.3f}x")
t, n = med("lat_tollgate", first, 1), med("lat_nginx", None, 1)
aim(f"p99 at {rate} req/s <= nginx's p99", t / n if t and n else None, lambda x: x <= 1.0, f"{t or 0:.3f} vs {n or 0:.3f} ms" + " ({:.2f}x)")
rss = med("rss", first, 1) if data.get(("rss", first)) else None
aim(f"RSS <= 64 MiB with {clients} clients cached", rss and rss / 1024, lambda x: x <= 64, "{:.1f} MiB")
aim(f"start-up to ready < 1 s with {clients} clients", med("startup", first), lambda x: 0 < x < 1000, "{:.0f} ms")
r = ratio("tls_tollgate", "tls_nginx", 0, first, "-")
aim("TLS keep-alive >= 0.75x nginx", r and r[0], lambda x: x >= 0.75, "{:.3f}x")
r = ratio("tls_pingora", "tls_nginx")
aim("(no aim) bare Pingora / nginx, TLS keep-alive", r and r[0], lambda x: True, "{:.3f}x")
r = ratio("tls_tollgate", "tls_pingora", 0, first, "-")
aim("(no aim) Tollgate / bare Pingora, TLS keep-alive", r and r[0], lambda x: True, "{:.3f}x")
r = ratio("hs_tollgate", "hs_nginx", 0, first, "-")
aim("TLS full handshakes/s >= nginx", r and r[0], lambda x: x >= 1.0, "{:.3f}x")
r = ratio("h2_tollgate", "h2_nginx", 0, first, "-")
aim("(no aim) HTTP/2 over TLS, Tollgate/nginx", r and r[0], lambda x: True, "{:.3f}x")
r = ratio("h2_pingora", "h2_nginx")
aim("(no aim) HTTP/2 over TLS, bare Pingora/nginx", r and r[0], lambda x: True, "{:.3f}x")
jn = data.get(("jwtnew_tollgate", first), {})
if jn and max(v[4] for v in jn.values()) > int(tokens):
    print(f"NOTE: a JWT-new run sent more requests than the {tokens} distinct tokens; raise TOKENS")
PY
if [ -n "${PERF:-}" ]; then python3 "$here/where.py" "$PERF" "$work/results"; fi
