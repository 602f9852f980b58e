#!/usr/bin/env bash
# What a session route costs: one gateway, two routes to the same upstream,
# `/open` (auth none) and `/sess` (auth session, Redis-backed sessions with
# the replica-local cache), loaded in alternation with the same wrk settings.
# The session is minted into our own Redis through the gateway's session
# store (examples/mint_session.rs); no identity provider is ever contacted.
# Loopback only. See bench/README.md.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

WORKERS=${BENCH_WORKERS:-1}
ROUNDS=${BENCH_ROUNDS:-5}
CONNS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
THREADS=${BENCH_WRK_THREADS:-1}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
CACHE_TTL=${BENCH_CACHE_TTL:-10}
# 1: /open requests carry the same session cookie, so that the two differ
# only in what the gateway does with it, not in request size.
OPEN_COOKIE=${BENCH_OPEN_COOKIE:-0}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
MINT_BIN=${BENCH_MINT_BIN:-$ROOT/target/release/examples/mint_session}
OUT_DIR=$ROOT/target/bench
OUT_JSON=$OUT_DIR/auth.json
READY_TIMEOUT=30
# Median req/s of /sess over /open. A miss is reported, not fatal: the
# numbers depend on the machine.
TARGET=0.95
CONFIGS=(open sess)
SUBJECT=bench-user
FAIL_LOGS=(redis.out)
bench_on_failure() {
    [[ -s $TMP/gateway.log ]] || return 0
    printf '[bench] --- last non-access-log lines of gateway.log ---\n'
    grep -v '"msg":"request"' "$TMP/gateway.log" | tail -n 10
}

# ---------------------------------------------------------------- checks
for v in WORKERS ROUNDS CONNS THREADS UP_WORKERS CACHE_TTL; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $OPEN_COOKIE == [01] ]] || die "BENCH_OPEN_COOKIE must be 0 or 1 (got '$OPEN_COOKIE')"
DUR_S=$(dur_secs "$DURATION")
WARM_S=$(dur_secs "$WARMUP")

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

build_release demo_upstream mint_session -- "$UPSTREAM_BIN" "$MINT_BIN"

ensure_tools
REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
WRK_VERSION=$(wrk -v 2>&1 | head -n1 | awk '{print $2}' || true)

# ---------------------------------------------------------------- CPU layout
# As in ratelimit.sh: the gateway on CPUs of its own (1..WORKERS); upstream,
# wrk and Redis share CPU 0. Both routes run in the same gateway process,
# loaded one at a time, so they get exactly the same CPUs.
NCPU=$(nproc)
pin_layout "gateway" "upstream + wrk + redis"
GW_PIN=("${SUT_PIN[@]}")

# ---------------------------------------------------------------- setup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-auth.XXXXXX")
mkdir -p "$OUT_DIR"
rm -f "$OUT_JSON"

read -r P_UP P_REDIS P_GW P_ADMIN < <(free_ports 4)
REDIS_URL="redis://127.0.0.1:$P_REDIS/0"
# A fresh secret per run, only ever in $TMP (mode 700) and in the argv of
# mint_session: sessions of one run mean nothing to another.
SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')

cat >"$TMP/gateway.yaml" <<EOF
server: {listen: "127.0.0.1:$P_GW", workers: $WORKERS}
admin: {listen: "127.0.0.1:$P_ADMIN"}
logging: {level: info, format: json}
upstreams: {demo: {targets: ["http://127.0.0.1:$P_UP"]}}
$(session_auth_yaml "$SECRET" "$CACHE_TTL")
routes:
  - {name: open, path_prefix: /open, strip_prefix: /open, upstream: demo}
  - {name: sess, path_prefix: /sess, strip_prefix: /sess, upstream: demo, auth: session}
EOF
"$GATEWAY_BIN" check --config "$TMP/gateway.yaml" >/dev/null 2>"$TMP/check.err" ||
    die "gateway rejected the config: $(cat "$TMP/check.err")"
rm -f "$TMP/check.err"

# ---------------------------------------------------------------- start
say "work dir $TMP; ports upstream=$P_UP redis=$P_REDIS gateway=$P_GW admin=$P_ADMIN"

start_redis
start_upstream

start gateway "$TMP/gateway.log" "${GW_PIN[@]}" "$GATEWAY_BIN" --config "$TMP/gateway.yaml"
wait_ready gateway "http://127.0.0.1:$P_ADMIN/health/ready"

# One session, written by the gateway's own store code with the same secret.
SID=$(timeout 30 "$MINT_BIN" --redis "$REDIS_URL" --secret "$SECRET" --subject "$SUBJECT" \
    2>"$TMP/mint.err") || die "mint_session failed: $(cat "$TMP/mint.err")"
[[ $SID =~ ^[A-Za-z0-9_-]{43}$ ]] || die "mint_session printed '$SID', not a session id"
[[ $(redis_cli dbsize) == 1 ]] || die "expected exactly one key (the session) in Redis"
COOKIE="gateway_session=$SID"

declare -A URL=(
    [open]="http://127.0.0.1:$P_GW/open/hello"
    [sess]="http://127.0.0.1:$P_GW/sess/hello"
)
declare -A HDR=([open]="" [sess]="Cookie: $COOKIE")
[[ $OPEN_COOKIE != 1 ]] || HDR[open]="Cookie: $COOKIE"

# ---------------------------------------------------------------- probes
# status URL [HEADER] -> HTTP status code; body in $TMP/body
status() {
    local args=(-sS --max-time 2 -o "$TMP/body" -w '%{http_code}')
    [[ -z ${2:-} ]] || args+=(-H "$2")
    curl "${args[@]}" "$1"
}
code=$(status "${URL[open]}") || die "GET ${URL[open]} failed"
[[ $code == 200 && $(cat "$TMP/body") == "$UP_BODY" ]] ||
    die "open: status $code or body differs from the upstream's"
code=$(status "${URL[sess]}" "${HDR[sess]}") || die "GET ${URL[sess]} failed"
[[ $code == 200 && $(cat "$TMP/body") == "$UP_BODY" ]] ||
    die "sess with the cookie: status $code (want 200) or body differs: $(cat "$TMP/body")"
code=$(status "${URL[sess]}") || die "GET ${URL[sess]} failed"
[[ $code == 401 ]] || die "sess without a cookie: status $code, want 401"
code=$(status "${URL[sess]}" "Cookie: gateway_session=not-a-session") || die "GET ${URL[sess]} failed"
[[ $code == 401 ]] || die "sess with an unknown session id: status $code, want 401"
# The identity must reach the upstream (the proxy's X-Auth-* headers), and
# the open route must not carry one.
code=$(status "http://127.0.0.1:$P_GW/sess/echo" "${HDR[sess]}") || die "GET /sess/echo failed"
if [[ $code != 200 ]] || ! grep -q "\"x-auth-subject\":\"$SUBJECT\"" "$TMP/body"; then
    die "sess: the upstream did not get x-auth-subject=$SUBJECT ($code): $(cat "$TMP/body")"
fi
code=$(status "http://127.0.0.1:$P_GW/open/echo" "${HDR[sess]}") || die "GET /open/echo failed"
if [[ $code != 200 ]] || grep -q '"x-auth-' "$TMP/body"; then
    die "open: status $code or the upstream got X-Auth-* headers: $(cat "$TMP/body")"
fi
say "checks: /open 200, /sess 200 with the cookie (x-auth-subject=$SUBJECT upstream)," \
    "401 without it and with an unknown id"

# auth_snapshot -> "authenticated other" for route sess, from /metrics.
# authenticated counts session logins that succeeded; other is every other
# outcome (unauthenticated, forbidden, refreshed), which must stay 0 during
# the rounds.
auth_snapshot() {
    http_get "http://127.0.0.1:$P_ADMIN/metrics" | awk '
    /^gateway_auth_outcomes_total\{/ && index($0, "route=\"sess\"") {
        if (index($0, "result=\"authenticated\"")) ok += $NF; else other += $NF
    }
    END { printf "%d %d\n", ok, other }'
}

# redis_snapshot -> "get_calls all_calls" from INFO commandstats (all_calls
# leaves out the INFO this script sends).
redis_snapshot() {
    redis_cli info commandstats | awk -F'[:=,]' '
        /^cmdstat_/ {
            if ($1 == "cmdstat_get") get = $3
            if ($1 != "cmdstat_info") all += $3
        }
        END { printf "%d %d\n", get, all }'
}

# snap ARRAY CMD...: ARRAY = the words CMD prints; dies if CMD fails.
snap() {
    local -n _into=$1
    shift
    local out
    out=$("$@") || die "$* failed"
    read -r -a _into <<<"$out"
}

# ---------------------------------------------------------------- measure
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results.tsv
ERRORS=0

# run_wrk CONFIG DURATION OUT_FILE -> sets LAST to the TSV fields of one row
# (after round and config): rps p50 p99 requests socket_errors non2xx cpu%
# req/cpu_s auth_ok auth_other redis_gets redis_calls
run_wrk() {
    local c=$1 dur=$2 out=$3 secs t0 t1 a0=() a1=() r0=() r1=() hdr=()
    secs=$(dur_secs "$dur")
    [[ -z ${HDR[$c]} ]] || hdr=(-H "${HDR[$c]}")
    # The access log grows by megabytes per second; only this round's is kept.
    : >"$TMP/gateway.log"
    snap a0 auth_snapshot
    snap r0 redis_snapshot
    t0=$(cpu_ticks "${PID[gateway]}")
    # In the background and waited for: a trapped Ctrl-C interrupts `wait`
    # at once, whereas a foreground wrk would swallow it and exit 0.
    "${LOAD_PIN[@]}" timeout --kill-after=5 $((secs + 30)) \
        wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "${hdr[@]}" "${URL[$c]}" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk against $c failed: $(tail -n 5 "$out")"
    WRK_PID=""
    t1=$(cpu_ticks "${PID[gateway]}")
    kill -0 "${PID[gateway]}" 2>/dev/null || die "the gateway died during the run"
    kill -0 "${PID[redis]}" 2>/dev/null || die "redis-server died during the run"
    # Requests wrk left in flight finish after it exits; let their counters land.
    sleep 0.3
    snap a1 auth_snapshot
    snap r1 redis_snapshot
    local parsed rps p50 p99 reqs wsecs sock non2xx cpu_rpc
    parsed=$(parse_wrk <"$out") || die "could not parse wrk output for $c: $(cat "$out")"
    read -r rps p50 p99 reqs wsecs sock non2xx <<<"$parsed"
    read -r -a cpu_rpc < <(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$wsecs" -v r="$reqs" \
        'BEGIN { c = t / hz; printf "%.0f %.0f\n", (s > 0 ? 100 * c / s : 0), (c > 0 ? r / c : 0) }')
    local row=("$rps" "$p50" "$p99" "$reqs" "$sock" "$non2xx" "${cpu_rpc[@]}")
    row+=($((a1[0] - a0[0])) $((a1[1] - a0[1])) $((r1[0] - r0[0])) $((r1[1] - r0[1])))
    LAST=$(IFS=$'\t'; echo "${row[*]}")
}

# row_errors CONFIG "$LAST" -> failed requests, plus session requests that
# were not authenticated or did not go through the auth stage at all (its
# count must cover every request wrk counted), and on /open any auth
# activity on route sess.
row_errors() {
    awk -F'\t' -v c="$1" '{
        n = $5 + $6 + $10
        if (c == "open") n += $9
        if (c == "sess" && $9 < $4) n += $4 - $9
        print n
    }' <<<"$2"
}

say "setup: workers=$WORKERS, upstream workers=$UP_WORKERS, wrk -t$THREADS -c$CONNS" \
    "-d$DURATION, rounds=$ROUNDS, warm-up=$WARMUP, cache_ttl_secs=$CACHE_TTL, redis $REDIS_VERSION,"\
    "cookie on /open: $([[ $OPEN_COOKIE == 1 ]] && echo yes || echo no)"
say "pinning: $PINNING"
say "expect about $((2 * (WARM_S + ROUNDS * DUR_S) + ROUNDS + 5))s"

for c in "${CONFIGS[@]}"; do
    say "warm-up $c ($WARMUP)"
    run_wrk "$c" "$WARMUP" "$TMP/wrk-warmup-$c.txt"
    errs=$(row_errors "$c" "$LAST")
    ((errs == 0)) || die "$c: $errs errors during warm-up: $LAST"
done

printf '\n%-5s %-6s %10s %8s %8s %9s %5s %9s %6s %10s %11s\n' \
    round route 'req/s' 'p50_ms' 'p99_ms' requests 'cpu%' 'req/cpu_s' errors 'redis_GET' 'redis_cmds'
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "${CONFIGS[@]}"; do
        run_wrk "$c" "$DURATION" "$TMP/wrk-$r-$c.txt"
        printf '%s\t%s\t%s\n' "$r" "$c" "$LAST" >>"$RESULTS"
        errs=$(row_errors "$c" "$LAST")
        ERRORS=$((ERRORS + errs))
        awk -F'\t' -v r="$r" -v c="$c" -v e="$errs" '{
            printf "%-5s %-6s %10s %8s %8s %9s %5s %9s %6s %10s %11s\n",
                r, c, $1, $2, $3, $4, $7, $8, e, $11, $12
        }' <<<"$LAST"
        if ((errs)); then
            awk -F'\t' -v r="$r" -v c="$c" '{
                printf "[bench] round %s %s: %s socket errors, %s non-2xx, %s session " \
                    "requests not authenticated, %s authenticated for %s requests\n",
                    r, c, $5, $6, $10, $9, $4
            }' <<<"$LAST"
        fi
    done
done

# ---------------------------------------------------------------- summary
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo none)
# Values go to Python through the environment, never pasted into its source.
B_ROUNDS=$ROUNDS B_WORKERS=$WORKERS B_UP_WORKERS=$UP_WORKERS B_THREADS=$THREADS \
B_CONNS=$CONNS B_DURATION=$DURATION B_DUR_S=$DUR_S B_WARMUP=$WARMUP B_PINNING=$PINNING \
B_NCPU=$NCPU B_REDIS=$REDIS_VERSION B_WRK=$WRK_VERSION B_GIT=$GIT_REV B_TARGET=$TARGET \
B_CACHE_TTL=$CACHE_TTL B_ERRORS=$ERRORS B_OPEN_COOKIE=$OPEN_COOKIE \
    python3 - "$RESULTS" "$OUT_JSON" <<'EOF'
import json, math, os, statistics, sys, time

env = os.environ
CONFIGS = ("open", "sess")
FIELDS = ("rps", "p50_ms", "p99_ms", "requests", "socket_errors", "non_2xx", "cpu_pct",
          "req_per_cpu_s", "auth_authenticated", "auth_other", "redis_gets", "redis_commands")
FLOATS = ("rps", "p50_ms", "p99_ms", "cpu_pct", "req_per_cpu_s")

rows = []
with open(sys.argv[1]) as f:
    for line in f:
        r, config, *vals = line.rstrip("\n").split("\t")
        row = dict(round=int(r), route=config)
        for k, v in zip(FIELDS, vals):
            row[k] = float(v) if k in FLOATS else int(v)
        rows.append(row)

def med(config, key):
    return statistics.median(r[key] for r in rows if r["route"] == config)

summary = {c: dict(rps_median=round(med(c, "rps"), 2), p50_ms_median=round(med(c, "p50_ms"), 3),
                   p99_ms_median=round(med(c, "p99_ms"), 3), cpu_pct_median=med(c, "cpu_pct"),
                   req_per_cpu_s_median=med(c, "req_per_cpu_s"))
           for c in CONFIGS}
o, s = summary["open"], summary["sess"]
ratio = round(s["rps_median"] / o["rps_median"], 3) if o["rps_median"] else None
cpu_ratio = (round(s["req_per_cpu_s_median"] / o["req_per_cpu_s_median"], 3)
             if o["req_per_cpu_s_median"] else None)
p99_added = round(s["p99_ms_median"] - o["p99_ms_median"], 3)
# Each round's sess run follows its open run: the ratio within a round
# shares the machine's state of that moment, so its median over rounds
# resists slow drifts (other tenants, CPU boost) better than the ratio of
# the medians.
by_round = {}
for r in rows:
    by_round.setdefault(r["round"], {})[r["route"]] = r["rps"]
paired = round(statistics.median(v["sess"] / v["open"] for v in by_round.values()
                                 if v.get("open") and "sess" in v), 3)
target = float(env["B_TARGET"])
passed = ratio is not None and ratio >= target

# Redis: GETs are session loads that missed the replica-local cache. Count
# them over all measured rounds (the cache also expires during /open rounds,
# but only a /sess request reloads it).
ttl = int(env["B_CACHE_TTL"])
sess_rows = [r for r in rows if r["route"] == "sess"]
gets = sum(r["redis_gets"] for r in rows)
sess_requests = sum(r["requests"] for r in sess_rows)
sess_secs = len(sess_rows) * int(env["B_DUR_S"])
# A /sess round reloads the cached copy each time it has expired: with
# rounds of D seconds that is floor(D/ttl) to floor(D/ttl)+1 reloads per
# round, depending on where the expiries fall (with the defaults, 1 or 2).
dur = int(env["B_DUR_S"])
reloads_lo = len(sess_rows) * (dur // ttl)
reloads_hi = len(sess_rows) * (dur // ttl + 1)
redis = dict(gets=gets, gets_during_open_rounds=sum(r["redis_gets"] for r in rows
                                                    if r["route"] == "open"),
             gets_per_sess_round=[r["redis_gets"] for r in sess_rows],
             commands=sum(r["redis_commands"] for r in rows),
             session_requests=sess_requests, session_seconds=sess_secs,
             cache_ttl_secs=ttl, cache_reloads_expected=[reloads_lo, reloads_hi],
             gets_per_reload=[round(gets / reloads_hi, 1),
                              round(gets / reloads_lo, 1) if reloads_lo else None],
             gets_per_1000_session_requests=(round(1000 * gets / sess_requests, 4)
                                             if sess_requests else None))

print()
print(f"{'median':<8} {'req/s':>10} {'p50_ms':>8} {'p99_ms':>8} {'cpu%':>5} {'req/cpu_s':>9}"
      f"   (over {env['B_ROUNDS']} rounds)")
for c in CONFIGS:
    m = summary[c]
    print(f"{c:<8} {m['rps_median']:>10.2f} {m['p50_ms_median']:>8.3f} {m['p99_ms_median']:>8.3f}"
          f" {m['cpu_pct_median']:>5.0f} {m['req_per_cpu_s_median']:>9.0f}")
print(f"sess/open: req/s {ratio} (target >= {target}: {'PASS' if passed else 'MISS'})  "
      f"p99 {p99_added:+.3f} ms  req/cpu_s {cpu_ratio}")
print(f"sess/open within each round, median: {paired}")
if any(summary[c]["cpu_pct_median"] < 90 for c in CONFIGS):
    print("NOTE: the gateway used under 90% of its CPU: the load side (wrk + upstream + redis"
          " on CPU 0) limited req/s, so the req/cpu_s ratio is the gateway's own cost")
lo, hi = redis["gets_per_reload"]
print(f"redis: {gets} GETs for {sess_requests} session requests over {sess_secs}s of /sess load"
      f" ({redis['gets_during_open_rounds']} during /open rounds); per /sess round:"
      f" {' '.join(str(g) for g in redis['gets_per_sess_round'])}")
print(f"redis: cache_ttl_secs={ttl} means {reloads_lo}-{reloads_hi} cache reloads, so {lo}-{hi or '?'}"
      f" GETs per reload (1: the SessionCache actor merges concurrent misses into one load;"
      f" near {env['B_CONNS']}, the connection count, would mean each miss went to Redis)")

print(f"RESULT auth_session_ratio={ratio} open_rps={o['rps_median']} session_rps={s['rps_median']} "
      f"p99_added_ms={p99_added} redis_gets={gets}")

doc = dict(
    benchmark="auth", ok=int(env["B_ERRORS"]) == 0, errors=int(env["B_ERRORS"]),
    time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git_rev=env["B_GIT"],
    setup=dict(workers=int(env["B_WORKERS"]), upstream_workers=int(env["B_UP_WORKERS"]),
               wrk_threads=int(env["B_THREADS"]), connections=int(env["B_CONNS"]),
               duration=env["B_DURATION"], warmup=env["B_WARMUP"], rounds=int(env["B_ROUNDS"]),
               pinning=env["B_PINNING"], nproc=int(env["B_NCPU"]),
               paths=dict(open="/open/hello -> /hello (auth none)"
                          + (", same cookie sent" if env["B_OPEN_COOKIE"] == "1" else ", no cookie"),
                          sess="/sess/hello -> /hello (auth session, cookie of a cached session)"),
               cache_ttl_secs=ttl, redis=env["B_REDIS"], wrk=env["B_WRK"]),
    summary=summary,
    sess_vs_open=dict(ratio=ratio, target=target, **{"pass": passed}, p99_added_ms=p99_added,
                      req_per_cpu_s_ratio=cpu_ratio, paired_ratio_median=paired),
    redis=redis, rounds=rows)
with open(sys.argv[2], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
say "wrote ${OUT_JSON#"$ROOT"/}"

if ((ERRORS)); then
    die "$ERRORS errors (socket errors, non-2xx, unauthenticated session requests); results are not valid"
fi
