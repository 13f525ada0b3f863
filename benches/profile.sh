#!/usr/bin/env bash
# Instructions per request of the gateway, by route, counted by callgrind:
# the same count for the same binary and requests however busy the machine
# is, so it shows a change of a few percent that wrk's req/s (which drifts
# by 10% and more between runs on a shared machine) cannot.
#
# One gateway (threads 1) runs under valgrind; N keep-alive requests each
# go to the public route, the API-key route and the JWT route (built-in
# issuer), after a warm-up; the counters are reset between routes. The
# route `jwt_new` sends the JWT route N tokens it has not seen (ES256, each
# its own `jti`), so every request verifies a signature; `public_h2c` is
# the public route over HTTP/2 without TLS (h2load, where installed). The
# report gives instructions per request, the ratio to the public route, and
# where the difference goes (inclusive counts of the gateway's parts); then
# the same public requests through a bare Pingora proxy built like the
# gateway (examples/bench_pingora.rs: the floor under the gateway's hooks)
# and through nginx and HAProxy as plain proxies, where they are installed,
# counted alike (rows `pingora (plain)`, `nginx (plain)`, `haproxy (plain)`).
#
#   benches/profile.sh          # N=2000
#   EXTRA_CONFIG="usage: { enabled: false }" benches/profile.sh
#                               # the same with a configuration section added
#   KEEP=DIR benches/profile.sh # also copies the callgrind dumps to DIR,
#                               # for callgrind_annotate
#   TOLLGATE_BIN=PATH benches/profile.sh
#                               # counts that binary, built before (no build;
#                               # the bench examples must be built already)
#
# valgrind does not emulate SHA-NI, so SHA-256 (the API-key HMAC, the
# token digest) runs in software here: it is counted at several times what
# it costs on a CPU with SHA extensions. The "sha256" line shows how much.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap
source benches/common.sh
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
N="${N:-2000}"

BIN="${TOLLGATE_BIN:-./target/release/tollgate}"
if [ -z "${TOLLGATE_BIN:-}" ]; then
    cargo build --release --quiet --bin tollgate --example bench_upstream --example bench_token --example bench_pingora
fi
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/cg.out* "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

UP=$(port); GW=$(port); ADMIN=$(port); METRICS=$(port)
./target/release/examples/bench_upstream "127.0.0.1:$UP" & pids+=($!)
THREADS=1
bench_config "$GW" "$ADMIN" "$METRICS" "${EXTRA_CONFIG:-}" > "$work/profile.yaml"
TOLLGATE_ADMIN_TOKEN=bench valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$work/cg.out" "$BIN" serve --config "$work/profile.yaml" \
    > "$work/gateway.log" 2>&1 &
GWPID=$!; pids+=($GWPID)
for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null || { echo "gateway did not start: $(cat "$work/gateway.log")" >&2; exit 1; }

bench_clients

# one curl config per route: N requests on one keep-alive connection
requests() { # file path [header]
    : > "$1"
    [ -n "${3:-}" ] && echo "header = \"$3\"" >> "$1"
    for _ in $(seq 1 "$N"); do printf 'url = "http://127.0.0.1:%s%s"\noutput = /dev/null\n' "$GW" "$2" >> "$1"; done
}
requests "$work/public.k" "$PUBLIC_PATH"
requests "$work/keyed.k" "$KEY_PATH" "X-API-Key: $KEY"
requests "$work/jwt.k" "$JWT_PATH" "Authorization: Bearer $TOKEN"
# controls: the public route sent the same credential headers (stripped,
# never checked), so what a credential's bytes cost shows apart from what
# checking it costs
requests "$work/public_key.k" "$PUBLIC_PATH" "X-API-Key: $KEY"
requests "$work/public_bearer.k" "$PUBLIC_PATH" "Authorization: Bearer $TOKEN"
# distinct tokens: the first N for the check below, the next N measured
BENCH_TOKENS=$((2 * N)) ./target/release/examples/bench_token "$work/tollgate.db" "http://127.0.0.1:$GW" tollgate "$JWT_CLIENT" > "$work/tokens"
new_tokens() { # file first-line (a request of its own each: curl's `next`)
    sed -n "$2,$(($2 + N - 1))p" "$work/tokens" | while read -r t; do
        printf 'next\nurl = "http://127.0.0.1:%s%s"\nheader = "Authorization: Bearer %s"\noutput = /dev/null\nsilent\nwrite-out = "%%{http_code}\\n"\n' "$GW" "$JWT_PATH" "$t"
    done | tail -n +2 > "$1"
}
new_tokens "$work/jwt_new_check.k" 1
new_tokens "$work/jwt_new.k" $((N + 1))
# the N requests of FILE all answered 200, or stop: expect_200s LABEL FILE [DETAIL]
expect_200s() {
    local codes
    codes=$(curl -s -K "$2" -w '%{http_code}\n' | sort | uniq -c | tr -s ' ')
    [ "$codes" = " $N 200" ] || { echo "$1: expected $N answers 200, got: $codes${3:+ ($3)}" >&2; exit 1; }
}
# the requests of FILE counted from zero and dumped as NAME: count PID NAME FILE
count() {
    callgrind_control -z "$1" >/dev/null 2>&1
    curl -s -K "$3" > /dev/null
    callgrind_control -d "$2" "$1" >/dev/null 2>&1
}
ROUTES="public public_key keyed public_bearer jwt jwt_new"
for route in $ROUTES; do
    check="$work/$route.k"
    [ "$route" = jwt_new ] && check="$work/jwt_new_check.k"
    expect_200s "$route" "$check"
done
callgrind_control -i on "$GWPID" >/dev/null 2>&1
for route in $ROUTES; do
    count "$GWPID" "$route" "$work/$route.k"
done
# The public route over HTTP/2 without TLS (h2c, prior knowledge), when
# h2load is installed: N requests on one connection, 10 streams at a time.
if command -v h2load >/dev/null; then
    h2() { h2load -n "$1" -c 1 -m 10 "http://127.0.0.1:$GW$PUBLIC_PATH" | grep -o '[0-9]* succeeded'; }
    # (the first HTTP/2 connection under valgrind can miss the head timeout
    # while valgrind translates the code it runs for the first time)
    h2 100 > /dev/null || true
    [ "$(h2 "$N")" = "$N succeeded" ] || { echo "public_h2c: not every request succeeded" >&2; exit 1; }
    callgrind_control -z "$GWPID" >/dev/null 2>&1
    h2 "$N" > /dev/null
    callgrind_control -d public_h2c "$GWPID" >/dev/null 2>&1
    ROUTES="$ROUTES public_h2c"
else
    echo "h2load is not installed: HTTP/2 not counted (apt-get install nghttp2-client)" >&2
fi

# The same public requests through other proxies, one process each with a
# keep-alive pool to the same upstream: what a proxied request costs them,
# counted alike.
PEERS=""
count_peer() { # name port command...
    local name=$1 pport=$2; shift 2
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out.$name" \
        "$@" > "$work/$name.log" 2>&1 &
    local pid=$!; pids+=($pid)
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$pport$PUBLIC_PATH" 2>/dev/null && break
        sleep 0.1
    done
    sed "s#127.0.0.1:$GW/#127.0.0.1:$pport/#" "$work/public.k" > "$work/$name.k"
    expect_200s "$name" "$work/$name.k" "$(cat "$work/$name.log")"
    callgrind_control -i on "$pid" >/dev/null 2>&1
    count "$pid" "$name" "$work/$name.k"
    # the counts are written: no graceful shutdown to wait for
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PEERS="$PEERS $name"
}
# A Pingora proxy with nothing of the gateway in it (examples/bench_pingora.rs):
# the floor under the gateway's hooks.
if [ -x ./target/release/examples/bench_pingora ]; then
    PGP=$(port)
    count_peer pingora "$PGP" ./target/release/examples/bench_pingora "127.0.0.1:$PGP" "127.0.0.1:$UP"
else
    echo "examples/bench_pingora is not built: not counted (cargo build --release --example bench_pingora)" >&2
fi
# nginx and HAProxy (Debian's packages, where installed) as plain proxies:
# their configurations in benches/compare/, without TLS.
if command -v nginx >/dev/null; then
    NGP=$(port); mkdir -p "$work/nginx/tmp"
    sed -e "s#@WORK@#$work/nginx#g" -e "s#@UP@#$UP#g" -e "s#@PORT@#$NGP#g" \
        -e '/@TLS@\|ssl_certificate/d' -e 's/^daemon off;/daemon off;\nmaster_process off;/' \
        benches/compare/proxy.nginx.conf > "$work/nginx/nginx.conf"
    count_peer nginx "$NGP" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
else
    echo "nginx is not installed: not counted (apt-get install nginx-light)" >&2
fi
if command -v haproxy >/dev/null; then
    HAP=$(port)
    sed -e '/^frontend keyed/,$d' -e "s#@UP@#$UP#g" -e "s#@PORT@#$HAP#g" \
        benches/compare/haproxy.cfg > "$work/haproxy.cfg"
    count_peer haproxy "$HAP" haproxy -db -f "$work/haproxy.cfg"
else
    echo "haproxy is not installed: not counted (apt-get install haproxy)" >&2
fi

python3 - "$work" "$N" "$ROUTES" "$PEERS" <<'PY'
import collections, glob, re, sys
work, n, routes, peers = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def inclusive(path):
    """Total and inclusive Ir per function of one callgrind dump."""
    names, selfc, calls = {}, collections.Counter(), collections.Counter()
    fn = cfn = None
    pending = False
    def name(v):
        m = re.match(r"\((\d+)\)(?: (.*))?", v)
        if not m:
            return v
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))
    total = 0
    for line in open(path):
        if line.startswith("fn="):
            fn = name(line[3:].strip())
        elif line.startswith("cfn="):
            cfn = name(line[4:].strip())
        elif line.startswith("calls="):
            pending = True
        elif line.startswith("summary:"):
            total = int(line.split()[1])
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) < 2:
                continue
            if pending:
                if cfn != fn:
                    calls[fn] += int(parts[1])
                pending = False
            else:
                selfc[fn] += int(parts[1])
    inc = collections.Counter(selfc)
    inc.update(calls)
    return total, inc

dumps = {}
for path in glob.glob(f"{work}/cg.out*"):
    head = open(path).read(4000)
    m = re.search(r"^desc: Trigger: dump (\w+)", head, re.M)
    if m and m.group(1) in routes + peers:
        dumps[m.group(1)] = inclusive(path)
SHA = r"^sha2::sha256::compress256$"
parts = [
    ("auth", r"Gateway::check_access$|Authenticator::authenticate::\{\{closure\}\}$", "credential check (and authorization, where not inlined)"),
    ("sha256", SHA, "of which SHA-256 compression, in software under valgrind"),
    ("rewrite", r"forward::rewrite_upstream_request$|ProxyHttp>::upstream_request_filter::\{\{closure\}\}$", "upstream request rewrite: strip, X-Forwarded-*, identity headers"),
    ("head", r"v1::server::HttpSession::read_request", "Pingora reading and parsing the request head"),
]
def part(inc, pattern):
    return max((v for k, v in inc.items() if re.search(pattern, k)), default=0) / n
base = dumps["public"][0] / n
print(f"instructions per request (callgrind, {n} keep-alive requests per route)")
print(f"{'route':<15}{'total':>9}{'/public':>9}" + "".join(f"{p[0]:>9}" for p in parts))
for route in routes:
    total, inc = dumps[route]
    print(f"{route:<15}{total / n:>9.0f}{total / n / base:>9.3f}" + "".join(f"{part(inc, p[1]):>9.0f}" for p in parts))
for peer in peers:
    total = dumps[peer][0] / n
    print(f"{peer + ' (plain)':<15}{total:>9.0f}{total / base:>9.3f}")
for short, _, text in parts:
    print(f"  {short}: {text}")
print("  public_key, public_bearer: the public route sent the credential header of keyed, jwt")
def per(route):
    total, inc = dumps[route]
    return total / n, part(inc, SHA)
for route, control in (("keyed", "public_key"), ("jwt", "public_bearer")):
    (t, sha), (c, _) = per(route), per(control)
    print(f"{route}: the header's bytes {c - base:+.0f} ({(c - base) / base:+.1%} of public), "
          f"checking it {t - c:+.0f} ({(t - c) / base:+.1%}), "
          f"of which SHA-256 {sha:.0f}; without it {(t - sha - base) / base:+.1%} in all")
# Where a public request's instructions go: the gateway's hooks against
# Pingora's HTTP/1 work (inclusive counts; they overlap where one calls
# another, so they do not add up to the total).
total, inc = dumps["public"]
print(f"public route, {total / n:.0f} instructions per request; inclusive parts:")
for label, pattern in (
    ("Pingora: read and parse the client's request head", r"v1::server::HttpSession::read_request"),
    ("  of it, the gateway's head guard", r"HeadGuard as tokio::io::async_read::AsyncRead>::poll_read$"),
    ("Pingora: take a pooled upstream connection", r"Connector<C>::get_http_session"),
    ("Pingora: read and parse the upstream's response head", r"read_resp_header_parts"),
    ("Pingora: write the response to the client", r"Session::write_response_tasks"),
    ("Pingora: give the upstream connection back to the pool", r"Connector<C>::release_http_session"),
    ("gateway: request_filter (request id, path, route, credential)", r"ProxyHttp>::request_filter::\{\{closure\}\}$"),
    ("gateway: upstream_peer", r"ProxyHttp>::upstream_peer::\{\{closure\}\}$"),
    ("gateway: upstream request rewrite", r"ProxyHttp>::upstream_request_filter::\{\{closure\}\}$"),
    ("gateway: response_filter", r"ProxyHttp>::response_filter::\{\{closure\}\}$"),
    ("gateway: logging (metrics, usage, access log)", r"ProxyHttp>::logging::\{\{closure\}\}$"),
    ("memcpy, all callers (callgrind counts a rep movsb once a byte)", r"__memcpy_avx_unaligned_erms"),
):
    v = part(inc, pattern)
    print(f"  {label:<64}{v:>8.0f}{v * n / total:>7.1%}")
PY
