#!/usr/bin/env bash
# Do portal sign-ins delay proxied requests? Argon2id takes tens of
# milliseconds of CPU per sign-in; the gateway runs it on a bounded pool of
# blocking threads, never on the threads that proxy requests. This measures
# the proxy's latency at a fixed request rate (open loop, oha with latency
# correction) on the public route, with and without SIGNINS sign-ins per
# second beside it, in interleaved rounds, and prints medians.
#
#   benches/portal.sh      # RATE=2000 SIGNINS=20 DURATION=10s ROUNDS=3 THREADS=2
#   NO_BUILD=1 benches/portal.sh   # the release binary as it is
#   CONTROL=1 benches/portal.sh    # the same portal calls without a hash:
#                                  # GET /portal/v1/catalog with a session
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap
source benches/common.sh

RATE="${RATE:-2000}"
SIGNINS="${SIGNINS:-20}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"

OHA="${OHA:-$(command -v oha || true)}"
[ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ] && OHA="$HOME/.cargo/bin/oha"
if [ -z "$OHA" ]; then
    echo "installing oha (an open-loop load generator): cargo install oha --locked" >&2
    cargo install oha --locked --quiet && OHA="$HOME/.cargo/bin/oha"
fi
python3 -c "import requests" 2>/dev/null || python3 -m pip install --quiet --user requests >&2

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin tollgate --example bench_upstream
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

UP=$(port); GW=$(port); ADMIN=$(port); METRICS=$(port)
./target/release/examples/bench_upstream "127.0.0.1:$UP" & pids+=($!)
bench_config "$GW" "$ADMIN" "$METRICS" "portal: { session_ttl: 1h }" > "$work/bench.yaml"
TOLLGATE_ADMIN_TOKEN=bench ./target/release/tollgate serve --config "$work/bench.yaml" >"$work/gw.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$GW$PUBLIC_PATH" || { echo "gateway did not start: $(cat "$work/gw.log")" >&2; exit 1; }

# an account whose one-time password is changed once, so sign-ins succeed
admin /accounts '{"username":"bench","password":"one-time password"}' >/dev/null
python3 - "$GW" <<'PY'
import requests, sys
base = f"http://127.0.0.1:{sys.argv[1]}/portal/v1"
s = requests.post(f"{base}/session", json={"username": "bench", "password": "one-time password"}).json()
r = requests.post(f"{base}/me/password", headers={"authorization": f"Bearer {s['token']}"},
                  json={"current_password": "one-time password", "new_password": "the bench password"})
assert r.status_code == 204, r.text
PY

# SIGNINS sign-ins a second (paced, each checked), until killed; with
# CONTROL=1 as many catalog reads with a session, which hash nothing
cat > "$work/signins.py" <<'PY'
import os, requests, sys, time
base, rate = f"http://127.0.0.1:{sys.argv[1]}/portal/v1", float(sys.argv[2])
http, start, n, failed = requests.Session(), time.monotonic(), 0, 0
control = os.environ.get("CONTROL")
if control:
    token = http.post(f"{base}/session", json={"username": "bench", "password": "the bench password"}).json()["token"]
while True:
    if control:
        r = http.get(f"{base}/catalog", headers={"authorization": f"Bearer {token}"})
    else:
        r = http.post(f"{base}/session", json={"username": "bench", "password": "the bench password"})
    failed += r.status_code != 200
    n += 1
    print(f"{n} {failed}", flush=True)
    delay = start + n / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
PY

# one oha run: "p50_us p99_us p999_us rps"
measure() {
    "$OHA" --no-tui --output-format json -z "$DURATION" -q "$RATE" --latency-correction -c "$CONNECTIONS" \
        "http://127.0.0.1:$GW$PUBLIC_PATH" > "$work/oha.json" 2>/dev/null
    python3 - "$work/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
print(f'{p["p50"] * 1e6:.0f} {p["p99"] * 1e6:.0f} {p["p99.9"] * 1e6:.0f} {d["summary"]["requestsPerSec"]:.0f}')
PY
}

without=(); with=(); signed=()
for r in $(seq 1 "$ROUNDS"); do
    without+=("$(measure)")
    python3 "$work/signins.py" "$GW" "$SIGNINS" > "$work/signins.out" & sp=$!
    sleep 1
    with+=("$(measure)")
    kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true
    signed+=("$(tail -n1 "$work/signins.out")")
done

python3 - "$RATE" "$SIGNINS" "$DURATION" "$ROUNDS" "$THREADS" "$(IFS=';'; echo "${without[*]}")" "$(IFS=';'; echo "${with[*]}")" "$(IFS=';'; echo "${signed[*]}")" <<'PY'
import os, statistics, sys
rate, signins, duration, rounds, threads = sys.argv[1:6]
rows = lambda s: [list(map(float, x.split())) for x in s.split(";") if x.strip()]
without, with_, signed = rows(sys.argv[6]), rows(sys.argv[7]), rows(sys.argv[8])
med = lambda rs: [statistics.median(c) for c in zip(*rs)]
print(f"public route at {rate} req/s (oha, open loop, -z {duration}), {rounds} rounds, gateway threads {threads}")
print(f"{'case':<34}{'p50 us':>9}{'p99 us':>9}{'p99.9 us':>10}{'req/s':>9}")
beside = "catalog reads" if os.environ.get("CONTROL") else "sign-ins"
for name, rs in [(f"without {beside}", without), (f"with {signins} {beside}/s", with_)]:
    p50, p99, p999, rps = med(rs)
    print(f"{name:<34}{p50:>9.0f}{p99:>9.0f}{p999:>10.0f}{rps:>9.0f}")
ratio = statistics.median(w[1] / o[1] for w, o in zip(with_, without))
print(f"p99 with / without {beside} (median over rounds): {ratio:.2f}")
print(f"{beside} per round (total, failed): {', '.join(f'{int(s[0])} {int(s[1])}' for s in signed)}")
PY
