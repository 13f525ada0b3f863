# Shared by benches/load.sh and benches/profile.sh (sourced, not run):
# free ports, the gateway configuration they measure, the admin calls, and
# the two bench clients (an API key and a token of the built-in issuer).
# The caller sets work (a scratch directory), UP (the upstream's port), GW
# (the first gateway's proxy port, also the token issuer), ADMIN (its admin
# port) and THREADS.

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The paths the benches request, all of one length: the gateway's work on a
# path (Pingora's parsing, normalization, routing, the upstream's request
# line) grows with its length, about 80 instructions a character, and a
# comparison of routes must not measure that. The public route is the
# catch-all, so any path not taken by another route reaches it.
PUBLIC_PATH=/pub/
KEY_PATH=/key/
JWT_PATH=/jwt/
LIMITED_PATH=/lim/

# The configuration of one gateway: bench_config PROXY ADMIN METRICS [EXTRA YAML]
bench_config() {
cat <<YAML
server:
  listen: ["127.0.0.1:$1"]
  threads: $THREADS
admin: { listen: "127.0.0.1:$2" }
metrics: { listen: "127.0.0.1:$3" }
store: { url: "sqlite://$work/tollgate.db", cache: { ttl: 300s } }
${4:-}
auth:
  tokens: { issuer: "http://127.0.0.1:$GW", audience: tollgate }
logging: { level: warn }
plans:
  roomy: { rate: 100000000/s }
services:
  up: { upstreams: ["127.0.0.1:$UP"] }
  metered: { upstreams: ["127.0.0.1:$UP"] }
routes:
  - { name: keyed, match: { path_prefix: ${KEY_PATH%/} }, service: up, auth: [api_key] }
  - { name: limited, match: { path_prefix: ${LIMITED_PATH%/} }, service: metered, auth: [api_key] }
  - { name: jwt, match: { path_prefix: ${JWT_PATH%/} }, service: up, auth: [jwt] }
  - { name: public, match: { path_prefix: / }, service: up, auth: public }
YAML
}

admin() { curl -fsS -H "Authorization: Bearer bench" -H "Content-Type: application/json" "http://127.0.0.1:$ADMIN/admin/v1$1" -d "$2"; }
field() { python3 -c "import json,sys; v=json.load(sys.stdin); print(eval('v' + sys.argv[1]))" "$1"; }

# Sets KEY (subscribed to `up`, and to `metered` on the plan `roomy`) and
# TOKEN (a client subscribed to `up`), and checks that both pass.
bench_clients() {
    local keyed oauth
    keyed=$(admin /clients '{"name":"bench-key","auth_type":"api_key"}')
    KEY=$(echo "$keyed" | field '["api_key"]["key"]')
    admin /subscriptions "{\"client_id\":\"$(echo "$keyed" | field '["id"]')\",\"service\":\"up\"}" >/dev/null
    admin /subscriptions "{\"client_id\":\"$(echo "$keyed" | field '["id"]')\",\"service\":\"metered\",\"plan\":\"roomy\"}" >/dev/null
    oauth=$(admin /clients '{"name":"bench-jwt","auth_type":"oauth2"}' | field '["id"]')
    admin /subscriptions "{\"client_id\":\"$oauth\",\"service\":\"up\"}" >/dev/null
    JWT_CLIENT="$oauth"
    TOKEN=$(./target/release/examples/bench_token "$work/tollgate.db" "http://127.0.0.1:$GW" tollgate "$oauth")
    curl -fsS -o /dev/null -H "X-API-Key: $KEY" "http://127.0.0.1:$GW$KEY_PATH" || { echo "API-key route refused the bench key" >&2; exit 1; }
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW$JWT_PATH" || { echo "JWT route refused the bench token" >&2; exit 1; }
}
