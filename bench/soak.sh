#!/usr/bin/env bash
# Soak: the gateway for SOAK_SECONDS (default 600) at SOAK_LOAD (70 %) of its
# measured capacity, through the whole pipeline: JSON access log, a session
# route (a real login through the test OpenID provider of tests/oidc),
# a `scope: cluster` rate-limit policy on our own redis-server, and the
# demo upstream. Every 5 s it records the gateway's RSS, open fds and TCP
# connections, Redis's connected_clients, and the p99 and errors of the
# window; writes docs/soak.csv and docs/soak.png, and exits non-zero unless
# the second minute and the last minute match. Loopback only; every process
# it starts is stopped on exit. See bench/README.md, "Soak".
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

SOAK_SECONDS=${SOAK_SECONDS:-600}
LOAD=${SOAK_LOAD:-0.70}
CONNS=${SOAK_CONNECTIONS:-32}
WRK_THREADS=${SOAK_WRK_THREADS:-1}
WINDOW=5
CAP_DURATION=${SOAK_CAPACITY_DURATION:-15s}
# The capacity run uses the soak's connection count by default: more would
# leave the gateway with extra upstream connections that it closes once idle,
# a fall in fds and connections during the soak that is no trend.
CAP_CONNS=${SOAK_CAPACITY_CONNECTIONS:-$CONNS}
WORKERS=${SOAK_WORKERS:-1}
TOLERANCE_PCT=${SOAK_TOLERANCE_PCT:-10}
P99_TOLERANCE_MS=${SOAK_P99_TOLERANCE_MS:-1}
MAX_ERRORS=${SOAK_MAX_ERRORS:-0}
ACCESS_TOKEN_TTL=${SOAK_ACCESS_TOKEN_TTL:-300}
OUT_DIR=${SOAK_OUT_DIR:-$ROOT/docs}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
SOAK_USER=soak-user
READY_TIMEOUT=30
FAIL_LOGS=(redis.out oidc.out gateway-events.log wrk-*.txt)

# ---------------------------------------------------------------- checks
for v in SOAK_SECONDS CONNS WRK_THREADS CAP_CONNS WORKERS UP_WORKERS ACCESS_TOKEN_TTL; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $MAX_ERRORS =~ ^[0-9]+$ ]] || die "SOAK_MAX_ERRORS must be a number (got '$MAX_ERRORS')"
[[ $LOAD =~ ^0?\.[0-9]+$|^1(\.0*)?$ ]] || die "SOAK_LOAD must be a fraction in (0, 1] (got '$LOAD')"
[[ $TOLERANCE_PCT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SOAK_TOLERANCE_PCT must be a number"
[[ $P99_TOLERANCE_MS =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SOAK_P99_TOLERANCE_MS must be a number"
((SOAK_SECONDS >= 30)) || die "SOAK_SECONDS must be at least 30 (got $SOAK_SECONDS)"
((CONNS >= WRK_THREADS)) || die "SOAK_CONNECTIONS must be at least SOAK_WRK_THREADS"
WINDOWS=$((SOAK_SECONDS / WINDOW))
SOAK_SECONDS=$((WINDOWS * WINDOW))
CAP_S=$(dur_secs "$CAP_DURATION")

# ---------------------------------------------------------------- tools
ensure_tools() {
    local pkgs=()
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v redis-server >/dev/null || pkgs+=(redis-server)
    command -v redis-cli >/dev/null || pkgs+=(redis-tools)
    ((${#pkgs[@]})) || return 0
    apt_install "${pkgs[@]}"
}
ensure_tools
WRK_VERSION=$(wrk -v 2>&1 | head -n1 | awk '{print $2}' || true)
command -v node >/dev/null || die "node is needed for the OpenID provider of tests/oidc (Node 20.19+)"
[[ -d tests/oidc/node_modules/oidc-provider ]] ||
    die "tests/oidc/node_modules is missing: run npm ci --prefix tests/oidc (make soak does)"

# matplotlib for the PNG, in a virtual environment of the project's own,
# never in the system's or the user's Python (PLOT_PY).
ensure_plot_python

build_release demo_upstream -- "$UPSTREAM_BIN"

# ---------------------------------------------------------------- CPU layout
# As in the other benches: the gateway on CPUs of its own (1..WORKERS); the
# load side (wrk, upstream, Redis, the provider, the samplers) on CPU 0.
pin_layout "gateway" "wrk + upstream + redis + provider"
GW_PIN=("${SUT_PIN[@]}")

# ---------------------------------------------------------------- setup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-soak.XXXXXX")
mkdir -p "$TMP/lat" "$OUT_DIR" target/bench
read -r P_UP P_REDIS P_GW P_ADMIN P_OIDC < <(free_ports 5)
GW="http://127.0.0.1:$P_GW"
ISSUER="http://127.0.0.1:$P_OIDC"
SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
# The session and the provider's refresh token outlive the run; the access
# token (SOAK_ACCESS_TOKEN_TTL, the provider's default 300 s) does not, so
# the session is refreshed during the run, as a real one would be.
SESSION_TTL=$((SOAK_SECONDS + CAP_S + 3600))

cat >"$TMP/gateway.yaml" <<EOF
server: {listen: "127.0.0.1:$P_GW", workers: $WORKERS}
admin: {listen: "127.0.0.1:$P_ADMIN"}
logging: {level: info, format: json, access_log: true}
redis: {url: "redis://127.0.0.1:$P_REDIS/0", pool_size: 16, command_timeout_ms: 100}
upstreams: {demo: {targets: ["http://127.0.0.1:$P_UP"]}}
# Far above the soak rate: every request is decided in Redis and admitted.
rate_limits:
  soak: {requests: 1000000, period_secs: 1, burst: 1000, key: user, scope: cluster, on_store_error: local}
auth:
  provider:
    issuer: "$ISSUER"
    client_id: gateway
    client_secret: gateway-secret
    scopes: [openid, email, roles, offline_access]
    redirect_url: "$GW/oauth2/callback"
  session: {secret: "$SECRET", cookie_secure: false, ttl_secs: $SESSION_TTL}
routes:
  - {name: app, path_prefix: /app, strip_prefix: /app, upstream: demo, auth: session, rate_limit: [soak]}
EOF
"$GATEWAY_BIN" check --config "$TMP/gateway.yaml" >/dev/null 2>"$TMP/check.err" ||
    die "gateway rejected the config: $(cat "$TMP/check.err")"
rm -f "$TMP/check.err"

# ---------------------------------------------------------------- start
say "work dir $TMP; ports upstream=$P_UP redis=$P_REDIS gateway=$P_GW admin=$P_ADMIN provider=$P_OIDC"
say "pinning: $PINNING"
start_redis
start_upstream

start oidc "$TMP/oidc.out" "${LOAD_PIN[@]}" env NODE_ENV=development OIDC_PORT="$P_OIDC" \
    OIDC_REDIRECT_URIS="$GW/oauth2/callback" OIDC_ACCESS_TOKEN_TTL="$ACCESS_TOKEN_TTL" \
    OIDC_REFRESH_TOKEN_TTL="$SESSION_TTL" node tests/oidc/provider.mjs
deadline=$((SECONDS + READY_TIMEOUT))
until grep -q "^READY $ISSUER\$" "$TMP/oidc.out" 2>/dev/null; do
    kill -0 "${PID[oidc]}" 2>/dev/null || die "the OpenID provider exited during startup"
    ((SECONDS < deadline)) || die "the OpenID provider did not say READY within ${READY_TIMEOUT}s"
    sleep 0.2
done

# The gateway's stdout (access log and events) goes through a FIFO to awk,
# which keeps up with it: request lines are counted (the first 1000 that are
# not 200 are kept, to tell what failed), the other lines kept.
mkfifo "$TMP/gateway.fifo"
start logsink "$TMP/logsink.out" "${LOAD_PIN[@]}" awk -v events="$TMP/gateway-events.log" '
    index($0, "\"msg\":\"request\"") {
        n++
        if (!index($0, "\"status\":200,") && ++bad <= 1000) { print > events; fflush(events) }
        next
    }
    { print > events; fflush(events) }
    END { printf "%d %d\n", n, bad }' "$TMP/gateway.fifo"
start gateway "$TMP/gateway.fifo" "${GW_PIN[@]}" "$GATEWAY_BIN" --config "$TMP/gateway.yaml"
wait_ready gateway "http://127.0.0.1:$P_ADMIN/health/ready"

# ---------------------------------------------------------------- login
SID=$(timeout 60 python3 bench/soak.py login --gateway "$GW" --provider "$ISSUER" \
    --rd /app/hello --user "$SOAK_USER" 2>"$TMP/login.err") || die "login failed: $(cat "$TMP/login.err")"
COOKIE="gateway_session=$SID"
say "logged in as $SOAK_USER through /oauth2/login, the provider's forms and /oauth2/callback"

# status URL [HEADER] -> HTTP status; body in $TMP/body, headers in $TMP/headers
status() {
    local args=(-sS --max-time 5 -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}')
    [[ -z ${2:-} ]] || args+=(-H "$2")
    curl "${args[@]}" "$1"
}
code=$(status "$GW/app/hello" "Cookie: $COOKIE") || die "GET /app/hello failed"
[[ $code == 200 && $(cat "$TMP/body") == "$UP_BODY" ]] ||
    die "/app/hello with the session: status $code (want 200) or not the upstream's body: $(cat "$TMP/body")"
grep -qi '^ratelimit' "$TMP/headers" || die "/app/hello: no RateLimit-* headers, so no rate-limit policy ran"
code=$(status "$GW/app/hello") || die "GET /app/hello failed"
[[ $code == 401 ]] || die "/app/hello without a session: status $code, want 401"
code=$(status "$GW/app/echo" "Cookie: $COOKIE") || die "GET /app/echo failed"
grep -q "\"x-auth-subject\":\"$SOAK_USER\"" "$TMP/body" ||
    die "the upstream did not get x-auth-subject=$SOAK_USER: $(cat "$TMP/body")"
redis_cli info commandstats | grep -q '^cmdstat_evalsha:' ||
    die "our Redis took no rate-limit decision (no EVALSHA in INFO commandstats)"
say "checks: 200 with the session (x-auth-subject=$SOAK_USER upstream, RateLimit-* headers," \
    "decided in our Redis), 401 without"

# ---------------------------------------------------------------- capacity
URL="$GW/app/hello"
# run_wrk NAME WRK_ARGS... : wrk on the load CPU, output in $TMP/wrk-NAME.txt
run_wrk() {
    local name=$1
    shift
    "${LOAD_PIN[@]}" timeout --kill-after=5 "$((SOAK_SECONDS + CAP_S + 120))" \
        wrk "$@" >"$TMP/wrk-$name.txt" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk ($name) failed: $(tail -n 5 "$TMP/wrk-$name.txt")"
    WRK_PID=""
}
say "capacity: wrk -t1 -c$CAP_CONNS -d$CAP_DURATION with the session cookie (after a 3 s warm-up)"
run_wrk warmup -t1 -c"$CAP_CONNS" -d3s -H "Cookie: $COOKIE" "$URL"
run_wrk capacity -t1 -c"$CAP_CONNS" -d"$CAP_DURATION" --latency -H "Cookie: $COOKIE" "$URL"
read -r CAP_RPS CAP_P50 CAP_P99 _ _ CAP_SOCK CAP_NON2XX < <(parse_wrk <"$TMP/wrk-capacity.txt") ||
    die "could not parse wrk's output: $(cat "$TMP/wrk-capacity.txt")"
((CAP_SOCK + CAP_NON2XX == 0)) ||
    die "capacity run: $CAP_SOCK socket errors, $CAP_NON2XX non-2xx answers: $(grep -E 'errors|Non-2xx' "$TMP/wrk-capacity.txt")"
RATE=$(awk -v c="$CAP_RPS" -v l="$LOAD" 'BEGIN { printf "%d", c * l }')
say "capacity $CAP_RPS req/s (p50 $CAP_P50 ms, p99 $CAP_P99 ms); soak rate $RATE req/s ($LOAD)"

# ---------------------------------------------------------------- soak
LEAD=3
T0=$(($(date +%s) + LEAD))
WRK_SECS=$((LEAD + SOAK_SECONDS + 3))
say "soak: $SOAK_SECONDS s at $RATE req/s over $CONNS connections (wrk -t$WRK_THREADS, paced by" \
    "bench/soak.lua), sampled every ${WINDOW} s; ends about $(date -d "@$((T0 + SOAK_SECONDS))" +%H:%M:%S)"

"${LOAD_PIN[@]}" python3 bench/soak.py sample --pid "${PID[gateway]}" --t0 "$T0" \
    --windows "$WINDOWS" --window "$WINDOW" --out "$TMP/samples.jsonl" --gw-port "$P_GW" \
    --admin-port "$P_ADMIN" --up-port "$P_UP" --redis-port "$P_REDIS" --oidc-port "$P_OIDC" \
    --metrics-url "http://127.0.0.1:$P_ADMIN/metrics" 2>"$TMP/sampler.err" &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

run_wrk soak -t"$WRK_THREADS" -c"$CONNS" -d"${WRK_SECS}s" --timeout 10s -s bench/soak.lua \
    -H "Cookie: $COOKIE" "$URL" -- "$RATE" "$T0" "$SOAK_SECONDS" "$WINDOW" "$TMP/lat" "$WRK_THREADS"
wait "$SAMPLER_PID" || die "the sampler failed: $(tail -n 5 "$TMP/sampler.err")"
WRK_LINE=$(grep '^SOAK_WRK ' "$TMP/wrk-soak.txt") || die "no summary from bench/soak.lua: $(tail "$TMP/wrk-soak.txt")"
say "wrk: ${WRK_LINE#SOAK_WRK }"

# The session still works after the run (its access token was refreshed).
code=$(status "$URL" "Cookie: $COOKIE") || die "GET /app/hello after the soak failed"
[[ $code == 200 ]] || die "/app/hello with the session after the soak: status $code"

# Stop the gateway so that its last log lines reach the sink, which then ends.
GW_RSS_END=$(awk '/^VmRSS/ { print $2 }' "/proc/${PID[gateway]}/status")
stop_pid "${PID[gateway]}"
wait "${PID[logsink]}" || true
read -r LOG_LINES LOG_NON200 <"$TMP/logsink.out" || { LOG_LINES=0 LOG_NON200=0; }
if grep -q 'log output too slow' "$TMP/gateway-events.log"; then
    say "WARNING: the gateway dropped access-log lines (its stdout fell behind)"
fi

# ---------------------------------------------------------------- report
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo none)
META=$(python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    git_rev "$GIT_REV" workers "$WORKERS" pinning "$PINNING" nproc "$(nproc)" \
    wrk "$WRK_VERSION" rss_kb_at_stop "$GW_RSS_END" \
    capacity_p99_ms "$CAP_P99" wrk_summary "${WRK_LINE#SOAK_WRK }" \
    access_token_ttl_s "$ACCESS_TOKEN_TTL" time "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
rc=0
"$PLOT_PY" bench/soak.py report --lat-dir "$TMP/lat" --samples "$TMP/samples.jsonl" \
    --windows "$WINDOWS" --window "$WINDOW" --rate "$RATE" --capacity "$CAP_RPS" \
    --capacity-note "-t1 -c$CAP_CONNS -d$CAP_DURATION" --connections "$CONNS" \
    --tolerance-pct "$TOLERANCE_PCT" --p99-tolerance-ms "$P99_TOLERANCE_MS" --max-errors "$MAX_ERRORS" \
    --log-lines "$LOG_LINES" --log-non200 "$LOG_NON200" \
    --csv "$OUT_DIR/soak.csv" --png "$OUT_DIR/soak.png" --json target/bench/soak.json \
    --meta "$META" || rc=$?
say "wrote ${OUT_DIR#"$ROOT"/}/soak.csv, ${OUT_DIR#"$ROOT"/}/soak.png and target/bench/soak.json"
((rc == 0)) || die "soak verdict: not flat, or requests failed (see above)"
