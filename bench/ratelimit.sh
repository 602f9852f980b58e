#!/usr/bin/env bash
# What rate limiting costs: the same gateway route without a limit ("off"),
# with a local limit and with a cluster (Redis) limit, in front of the same
# upstream, loopback only. The budget is so large that nothing is refused:
# we time the limiter's work, not 429s. See bench/README.md.
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
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
BATCH_COMPARE=$([[ ${BENCH_NO_BATCH_COMPARE:-0} == 1 ]] && echo 0 || echo 1)
OUT_DIR=$ROOT/target/bench
OUT_JSON=$OUT_DIR/ratelimit.json
READY_TIMEOUT=30
# Targets for median req/s relative to "off". A miss is reported, not fatal:
# the numbers depend on the machine.
LOCAL_TARGET=0.95
CLUSTER_TARGET=0.80
POLICY=local_ip
CONFIGS=(off local cluster)
# On failure, show the end of Redis's output too...
FAIL_LOGS=(redis.out)
# ...and the gateways' own messages, without the access-log lines that bury them.
bench_on_failure() {
    local f
    for f in "$TMP"/gateway-*.log; do
        [[ -s $f ]] || continue
        printf '[bench] --- last non-access-log lines of %s ---\n' "${f#"$TMP"/}"
        grep -v '"msg":"request"' "$f" | tail -n 10
    done
}

# ---------------------------------------------------------------- checks
for v in WORKERS ROUNDS CONNS THREADS UP_WORKERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
DUR_S=$(dur_secs "$DURATION")
WARM_S=$(dur_secs "$WARMUP")

# ---------------------------------------------------------------- tools
ensure_tools() {
    local pkgs=()
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v redis-server >/dev/null || pkgs+=(redis-server)
    # redis-cli (INFO, PING) comes with redis-tools, a dependency of
    # redis-server on Debian, but may be missing if the server came otherwise.
    command -v redis-cli >/dev/null || pkgs+=(redis-tools)
    ((${#pkgs[@]})) || return 0
    apt_install "${pkgs[@]}"
}

build_release demo_upstream -- "$UPSTREAM_BIN"

ensure_tools
REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
WRK_VERSION=$(wrk -v 2>&1 | head -n1 | awk '{print $2}' || true)

# ---------------------------------------------------------------- CPU layout
# As in run.sh: the gateways get CPUs of their own (1..WORKERS), shared by all
# three since only one is loaded at a time; the upstream, wrk and Redis share
# CPU 0. Redis therefore takes CPU from the load side, not from the gateway:
# the cluster figure is the gateway's own cost plus the slower load side.
NCPU=$(nproc)
pin_layout "gateways" "upstream + wrk + redis"
GW_PIN=("${SUT_PIN[@]}")

# ---------------------------------------------------------------- setup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-rl.XXXXXX")
mkdir -p "$OUT_DIR"
rm -f "$OUT_JSON"

declare -A P_GW=() P_ADMIN=()
read -r -a ports < <(free_ports 8)
P_UP=${ports[0]} P_REDIS=${ports[1]}
for i in "${!CONFIGS[@]}"; do
    P_GW[${CONFIGS[i]}]=${ports[2 + 2 * i]}
    P_ADMIN[${CONFIGS[i]}]=${ports[3 + 2 * i]}
done

# gateway_yaml CONFIG: one config per measured variant; only the rate-limit
# parts differ.
gateway_yaml() {
    local c=$1
    cat <<EOF
server: {listen: "127.0.0.1:${P_GW[$c]}", workers: $WORKERS}
admin: {listen: "127.0.0.1:${P_ADMIN[$c]}"}
logging: {level: info, format: json}
upstreams: {demo: {targets: ["http://127.0.0.1:$P_UP"]}}
EOF
    case $c in
        off)
            echo "routes:"
            echo "  - {name: demo, path_prefix: /demo, strip_prefix: /demo, upstream: demo}"
            return
            ;;
        # 10^8 requests per second per client IP: never reached, so every
        # request is admitted and both scopes do their full work.
        local | cluster)
            echo "rate_limits: {$POLICY: {requests: 100000000, period_secs: 1, burst: 0, key: ip, scope: $c}}"
            ;;
    esac
    if [[ $c == cluster ]]; then
        echo "redis: {url: \"redis://127.0.0.1:$P_REDIS/0\", pool_size: 16, command_timeout_ms: 100}"
    fi
    echo "routes:"
    echo "  - {name: demo, path_prefix: /demo, strip_prefix: /demo, upstream: demo, rate_limit: [$POLICY]}"
}
for c in "${CONFIGS[@]}"; do
    gateway_yaml "$c" >"$TMP/gateway-$c.yaml"
    "$GATEWAY_BIN" check --config "$TMP/gateway-$c.yaml" >/dev/null 2>"$TMP/check-$c.err" ||
        die "gateway rejected the $c config: $(cat "$TMP/check-$c.err")"
done


# ---------------------------------------------------------------- start
say "work dir $TMP; ports upstream=$P_UP redis=$P_REDIS" \
    "gateways off=${P_GW[off]} local=${P_GW[local]} cluster=${P_GW[cluster]}"

start_redis
start_upstream

# All three at once: an idle gateway costs nothing measurable, and starting
# them once keeps their warm state across rounds.
declare -A URL=()
for c in "${CONFIGS[@]}"; do
    start "gateway-$c" "$TMP/gateway-$c.log" \
        "${GW_PIN[@]}" "$GATEWAY_BIN" --config "$TMP/gateway-$c.yaml"
    URL[$c]="http://127.0.0.1:${P_GW[$c]}/demo/hello"
done
for c in "${CONFIGS[@]}"; do
    wait_ready "gateway-$c" "http://127.0.0.1:${P_ADMIN[$c]}/health/ready"
done

# ---------------------------------------------------------------- probes
# gw_snapshot CONFIG -> "limiter_allowed limiter_other store_errors
# roundtrips redis_decisions" from the gateway's /metrics. limiter_allowed
# counts requests the limiter admitted with a real decision; limiter_other
# is every other outcome (limited, fallback_*, store_error_*), which must
# stay 0 or the round did not measure what it claims.
gw_snapshot() {
    http_get "http://127.0.0.1:${P_ADMIN[$1]}/metrics" | awk -v p="$POLICY" '
    /^gateway_ratelimit_decisions_total\{/ && index($0, "policy=\"" p "\"") {
        if (index($0, "outcome=\"allowed\"")) ok += $NF; else other += $NF
    }
    /^gateway_ratelimit_store_errors_total\{/  { err += $NF }
    /^gateway_ratelimit_redis_roundtrips_total / { rt = $NF }
    /^gateway_ratelimit_redis_decisions_total /  { dec = $NF }
    END { printf "%d %d %d %d %d\n", ok, other, err, rt, dec }'
}

# redis_snapshot -> "evalsha_calls all_calls ping_calls cpu_ticks" from INFO
# commandstats. all_calls leaves out the INFO this script sends; it includes
# the TIME/GET/SET the GCRA script runs inside each EVALSHA, and the
# UNWATCH+PING with which the connection pool checks a connection each time
# one is taken (this script sends no PING during rounds).
redis_snapshot() {
    local calls
    calls=$(redis_cli info commandstats | awk -F'[:=,]' '
        /^cmdstat_/ {
            if ($1 == "cmdstat_evalsha") ev = $3
            if ($1 == "cmdstat_ping") ping = $3
            if ($1 != "cmdstat_info") all += $3
        }
        END { printf "%d %d %d", ev, all, ping }') || die "redis INFO commandstats failed"
    echo "$calls $(cpu_ticks "${PID[redis]}")"
}

# snap ARRAY CMD...: ARRAY = the words CMD prints; dies if CMD fails (a
# process substitution would hide the failure).
snap() {
    local -n _into=$1
    shift
    local out
    out=$("$@") || die "$* failed"
    read -r -a _into <<<"$out"
}

# Each gateway must return the upstream's exact body; limited ones must send
# RateLimit-* headers (the limiter really ran) and the unlimited one none.
for c in "${CONFIGS[@]}"; do
    hdrs=$(curl -sS --max-time 2 -D - -o "$TMP/body-$c" "${URL[$c]}") || die "$c: GET ${URL[$c]} failed"
    [[ $(cat "$TMP/body-$c") == "$UP_BODY" ]] || die "$c: body differs from the upstream's"
    if [[ $c == off ]]; then
        ! grep -qi '^ratelimit-limit:' <<<"$hdrs" || die "off: RateLimit headers without a limit"
    else
        grep -qi '^ratelimit-limit:' <<<"$hdrs" || die "$c: no RateLimit-Limit header; limiter not active"
    fi
done
# ...and the cluster decision must have come from our Redis, not a fallback.
g=() rs=()
snap g gw_snapshot cluster
snap rs redis_snapshot
((g[1] + g[2] == 0 && g[4] >= 1 && rs[0] >= 1)) ||
    die "cluster: first request not decided by our Redis (other outcomes=${g[1]}" \
        "store errors=${g[2]} redis decisions=${g[4]} evalsha=${rs[0]})"

# ---------------------------------------------------------------- measure
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results.tsv
ERRORS=0
FALLBACKS=0 CLUSTER_DECISIONS=0
# A few fallback decisions (Redis late under a load spike) are reported; past
# this share of the cluster decisions the cluster rounds measured mostly the
# local fallback, and the run fails.
MAX_FALLBACK_PCT=1

# run_wrk CONFIG DURATION OUT_FILE -> sets LAST to the TSV fields of one row
# (after round and config): rps p50 p99 requests socket_errors non2xx cpu%
# req/cpu_s limiter_allowed limiter_other store_errors roundtrips
# redis_decisions evalsha redis_calls redis_pings redis_cpu% ("-" where not
# applicable).
run_wrk() {
    local c=$1 dur=$2 out=$3 secs t0 t1 g0=() g1=() r0=() r1=() f
    secs=$(dur_secs "$dur")
    # Access logs grow by megabytes per second under load; only the current
    # round's is kept.
    for f in "${CONFIGS[@]}"; do : >"$TMP/gateway-$f.log"; done
    [[ $c == off ]] || snap g0 gw_snapshot "$c"
    [[ $c != cluster ]] || snap r0 redis_snapshot
    t0=$(cpu_ticks "${PID[gateway-$c]}")
    # In the background and waited for: a trapped Ctrl-C interrupts `wait`
    # at once, whereas a foreground wrk would swallow it and exit 0.
    "${LOAD_PIN[@]}" timeout --kill-after=5 $((secs + 30)) \
        wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "${URL[$c]}" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk against $c failed: $(tail -n 5 "$out")"
    WRK_PID=""
    t1=$(cpu_ticks "${PID[gateway-$c]}")
    kill -0 "${PID[gateway-$c]}" 2>/dev/null || die "gateway $c died during the run"
    kill -0 "${PID[redis]}" 2>/dev/null || die "redis-server died during the run"
    # Requests wrk left in flight finish after it exits; let their counters land.
    sleep 0.3
    [[ $c == off ]] || snap g1 gw_snapshot "$c"
    [[ $c != cluster ]] || snap r1 redis_snapshot
    local parsed rps p50 p99 reqs wsecs sock non2xx
    parsed=$(parse_wrk <"$out") || die "could not parse wrk output for $c: $(cat "$out")"
    read -r rps p50 p99 reqs wsecs sock non2xx <<<"$parsed"
    local row=("$rps" "$p50" "$p99" "$reqs" "$sock" "$non2xx") cpu_rpc redis_cpu
    read -r -a cpu_rpc < <(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$wsecs" -v r="$reqs" \
        'BEGIN { c = t / hz; printf "%.0f %.0f\n", (s > 0 ? 100 * c / s : 0), (c > 0 ? r / c : 0) }')
    row+=("${cpu_rpc[@]}")
    if [[ $c == off ]]; then
        row+=(- - -)
    else
        row+=($((g1[0] - g0[0])) $((g1[1] - g0[1])) $((g1[2] - g0[2])))
    fi
    if [[ $c == cluster ]]; then
        redis_cpu=$(awk -v t=$((r1[3] - r0[3])) -v hz="$CLK_TCK" -v s="$wsecs" \
            'BEGIN { printf "%.0f", (s > 0 ? 100 * t / hz / s : 0) }')
        row+=($((g1[3] - g0[3])) $((g1[4] - g0[4])))
        row+=($((r1[0] - r0[0])) $((r1[1] - r0[1])) $((r1[2] - r0[2])) "$redis_cpu")
    else
        row+=(- - - - - -)
    fi
    LAST=$(IFS=$'\t'; echo "${row[*]}")
}

# row_errors "$LAST" -> failed requests (socket errors + non-2xx; a refusal
# would be a 429).
row_errors() { awk -F'\t' '{ print $5 + $6 }' <<<"$1"; }
# row_fallbacks "$LAST" -> rate-limit decisions other than a plain "allowed".
# With this budget that means Redis did not answer within command_timeout_ms
# (or the breaker was open) and the local fallback decided instead.
row_fallbacks() { awk -F'\t' '{ print ($10 == "-" ? 0 : $10) }' <<<"$1"; }

say "setup: workers=$WORKERS per gateway, upstream workers=$UP_WORKERS," \
    "wrk -t$THREADS -c$CONNS -d$DURATION, rounds=$ROUNDS, warm-up=$WARMUP, redis $REDIS_VERSION"
say "pinning: $PINNING"
say "expect about $((3 * (WARM_S + ROUNDS * DUR_S) + ROUNDS * 2 + 5))s"

for c in "${CONFIGS[@]}"; do
    say "warm-up $c ($WARMUP)"
    run_wrk "$c" "$WARMUP" "$TMP/wrk-warmup-$c.txt"
    errs=$(row_errors "$LAST")
    ((errs == 0)) || die "$c: $errs failed requests during warm-up: $LAST"
    fb=$(row_fallbacks "$LAST")
    ((fb == 0)) || say "WARNING: $c: $fb fallback decisions during warm-up (Redis too slow?)"
done

printf '\n%-5s %-7s %10s %8s %8s %9s %5s %9s %6s %8s  %s\n' \
    round config 'req/s' 'p50_ms' 'p99_ms' requests 'cpu%' 'req/cpu_s' errors fallback \
    'cluster: rt/1000req dec/rt evalsha/req redis_cpu%'
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "${CONFIGS[@]}"; do
        run_wrk "$c" "$DURATION" "$TMP/wrk-$r-$c.txt"
        printf '%s\t%s\t%s\n' "$r" "$c" "$LAST" >>"$RESULTS"
        errs=$(row_errors "$LAST")
        ERRORS=$((ERRORS + errs))
        fb=$(row_fallbacks "$LAST")
        if [[ $c == cluster ]]; then
            FALLBACKS=$((FALLBACKS + fb))
            CLUSTER_DECISIONS=$((CLUSTER_DECISIONS + $(awk -F'\t' '{ print $9 + $10 }' <<<"$LAST")))
        fi
        awk -F'\t' -v r="$r" -v c="$c" -v e="$errs" '{
            extra = ""
            if ($12 != "-" && $9 > 0 && $12 > 0)
                extra = sprintf("  %8.2f %7.1f %9.3f %6s", 1000 * $12 / $9, $13 / $12, $14 / $9, $17)
            printf "%-5s %-7s %10s %8s %8s %9s %5s %9s %6s %8s%s\n", r, c, $1, $2, $3, $4, $7, $8, e, $10, extra
        }' <<<"$LAST"
        if ((errs + fb)); then
            awk -F'\t' -v r="$r" -v c="$c" '{
                printf "[bench] round %s %s: %s socket errors, %s non-2xx, %s fallback decisions, " \
                    "%s Redis store errors\n", r, c, $5, $6, $10, $11
            }' <<<"$LAST"
        fi
    done
done

# ---------------------------------------------------------------- summary
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo none)
# Values go to Python through the environment, never pasted into its source.
B_ROUNDS=$ROUNDS B_WORKERS=$WORKERS B_UP_WORKERS=$UP_WORKERS B_THREADS=$THREADS \
B_CONNS=$CONNS B_DURATION=$DURATION B_WARMUP=$WARMUP B_PINNING=$PINNING B_NCPU=$NCPU \
B_REDIS=$REDIS_VERSION B_WRK=$WRK_VERSION B_GIT=$GIT_REV B_BATCH=$BATCH_COMPARE \
B_LOCAL_TARGET=$LOCAL_TARGET B_CLUSTER_TARGET=$CLUSTER_TARGET B_ERRORS=$ERRORS \
B_FALLBACKS=$FALLBACKS B_CLUSTER_DECISIONS=$CLUSTER_DECISIONS B_MAX_FALLBACK_PCT=$MAX_FALLBACK_PCT \
    python3 - "$RESULTS" "$OUT_JSON" <<'EOF'
import json, os, statistics, sys, time

env = os.environ
CONFIGS = ("off", "local", "cluster")
INT_FIELDS = ("requests", "socket_errors", "non_2xx", "limiter_allowed", "limiter_other",
              "store_errors", "redis_roundtrips", "redis_decisions", "redis_evalsha",
              "redis_calls", "redis_pings")
FIELDS = ("rps", "p50_ms", "p99_ms", "requests", "socket_errors", "non_2xx", "cpu_pct",
          "req_per_cpu_s", "limiter_allowed", "limiter_other", "store_errors",
          "redis_roundtrips", "redis_decisions", "redis_evalsha", "redis_calls",
          "redis_pings", "redis_cpu_pct")

rows = []
with open(sys.argv[1]) as f:
    for line in f:
        r, config, *vals = line.rstrip("\n").split("\t")
        row = dict(round=int(r), config=config)
        for k, v in zip(FIELDS, vals):
            row[k] = None if v == "-" else (int(v) if k in INT_FIELDS else float(v))
        # Per-request figures use the limiter's own count: exactly the requests
        # that went through it (wrk does not count those in flight at the end).
        n = row["limiter_allowed"]
        rt = row["redis_roundtrips"]
        if config == "cluster" and n and rt:
            row["roundtrips_per_1000"] = round(1000 * rt / n, 3)
            row["decisions_per_roundtrip"] = round(row["redis_decisions"] / rt, 2)
            row["evalsha_per_request"] = round(row["redis_evalsha"] / n, 4)
            row["redis_commands_per_request"] = round(row["redis_calls"] / n, 3)
            row["pool_checks_per_roundtrip"] = round(row["redis_pings"] / rt, 3)
        rows.append(row)

def med(config, key):
    vals = [r[key] for r in rows if r["config"] == config and r.get(key) is not None]
    return statistics.median(vals) if vals else None

summary = {}
for c in CONFIGS:
    summary[c] = dict(rps_median=round(med(c, "rps"), 2), p50_ms_median=round(med(c, "p50_ms"), 3),
                      p99_ms_median=round(med(c, "p99_ms"), 3), cpu_pct_median=med(c, "cpu_pct"),
                      req_per_cpu_s_median=med(c, "req_per_cpu_s"))
cl = summary["cluster"]
for k in ("roundtrips_per_1000", "decisions_per_roundtrip", "evalsha_per_request",
          "redis_commands_per_request", "pool_checks_per_roundtrip", "redis_cpu_pct"):
    v = med("cluster", k)
    cl[k + "_median"] = None if v is None else round(v, 3)

off = summary["off"]
ratio = lambda c: round(summary[c]["rps_median"] / off["rps_median"], 3) if off["rps_median"] else None
added = lambda c: round(summary[c]["p99_ms_median"] - off["p99_ms_median"], 3)
targets = dict(local=float(env["B_LOCAL_TARGET"]), cluster=float(env["B_CLUSTER_TARGET"]))
verdict = {c: dict(ratio=ratio(c), target=targets[c], p99_added_ms=added(c),
                   req_per_cpu_s_ratio=(round(summary[c]["req_per_cpu_s_median"]
                                              / off["req_per_cpu_s_median"], 3)
                                        if off["req_per_cpu_s_median"] else None),
                   pass_=ratio(c) is not None and ratio(c) >= targets[c])
           for c in ("local", "cluster")}

print()
print(f"{'median':<8} {'req/s':>10} {'p50_ms':>8} {'p99_ms':>8} {'cpu%':>5} {'req/cpu_s':>9}"
      f"   (over {env['B_ROUNDS']} rounds)")
for c in CONFIGS:
    s = summary[c]
    print(f"{c:<8} {s['rps_median']:>10.2f} {s['p50_ms_median']:>8.3f} {s['p99_ms_median']:>8.3f}"
          f" {s['cpu_pct_median']:>5.0f} {s['req_per_cpu_s_median']:>9.0f}")
for c in ("local", "cluster"):
    v = verdict[c]
    print(f"{c}/off: req/s {v['ratio']} (target >= {v['target']}: "
          f"{'PASS' if v['pass_'] else 'MISS'})  p99 {v['p99_added_ms']:+.3f} ms  "
          f"req/cpu_s {v['req_per_cpu_s_ratio']}")
if any(summary[c]["cpu_pct_median"] < 90 for c in CONFIGS):
    print("NOTE: a gateway used under 90% of its CPU: the load side (wrk + upstream"
          " + redis on CPU 0) limited req/s, so the req/cpu_s ratio is the gateway's own cost")

batching = None
if env["B_BATCH"] == "1":
    # Batching cannot be switched off in the gateway; without it every cluster
    # decision would be its own round trip: 1,000 per 1,000 requests.
    rt1k = cl["roundtrips_per_1000_median"]
    batching = dict(roundtrips_per_1000=rt1k, roundtrips_per_1000_without_batching=1000,
                    decisions_per_roundtrip=cl["decisions_per_roundtrip_median"],
                    evalsha_per_request=cl["evalsha_per_request_median"],
                    redis_commands_per_request=cl["redis_commands_per_request_median"],
                    pool_checks_per_roundtrip=cl["pool_checks_per_roundtrip_median"],
                    redis_cpu_pct=cl["redis_cpu_pct_median"])
    print(f"batching: {rt1k} Redis round trips per 1,000 cluster requests (1,000 without "
          f"batching), {cl['decisions_per_roundtrip_median']} decisions per round trip")
    print(f"redis: {cl['evalsha_per_request_median']} EVALSHA per request; "
          f"{cl['redis_commands_per_request_median']} commands per request counting the "
          f"script's TIME/GET/SET and pool checks; redis-server cpu {cl['redis_cpu_pct_median']}%")
    print(f"pool: {cl['pool_checks_per_roundtrip_median']} connection checks (UNWATCH+PING, "
          "one more round trip each) per counted round trip, not in the gateway's metric")

print(f"RESULT local_ratio={verdict['local']['ratio']} cluster_ratio={verdict['cluster']['ratio']} "
      f"local_p99_added_ms={verdict['local']['p99_added_ms']} "
      f"cluster_p99_added_ms={verdict['cluster']['p99_added_ms']} "
      f"redis_roundtrips_per_1000={cl['roundtrips_per_1000_median']} "
      f"decisions_per_roundtrip={cl['decisions_per_roundtrip_median']}")

for v in verdict.values():
    v["pass"] = v.pop("pass_")
fallbacks, decisions = int(env["B_FALLBACKS"]), int(env["B_CLUSTER_DECISIONS"])
fallback_pct = round(100 * fallbacks / decisions, 3) if decisions else 0.0
if fallbacks:
    print(f"WARNING: {fallbacks} cluster decisions ({fallback_pct}%) were taken by the local "
          "fallback because Redis did not answer in time")
doc = dict(
    benchmark="ratelimit",
    ok=int(env["B_ERRORS"]) == 0 and fallback_pct <= float(env["B_MAX_FALLBACK_PCT"]),
    errors=int(env["B_ERRORS"]), cluster_fallbacks=fallbacks, cluster_fallback_pct=fallback_pct,
    time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git_rev=env["B_GIT"],
    setup=dict(workers=int(env["B_WORKERS"]), upstream_workers=int(env["B_UP_WORKERS"]),
               wrk_threads=int(env["B_THREADS"]), connections=int(env["B_CONNS"]),
               duration=env["B_DURATION"], warmup=env["B_WARMUP"], rounds=int(env["B_ROUNDS"]),
               pinning=env["B_PINNING"], nproc=int(env["B_NCPU"]), path="/demo/hello -> /hello",
               policy=dict(requests=100000000, period_secs=1, burst=0, key="ip"),
               redis=env["B_REDIS"], wrk=env["B_WRK"]),
    summary=summary, vs_off=verdict, batching=batching, rounds=rows)
with open(sys.argv[2], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
say "wrote ${OUT_JSON#"$ROOT"/}"

if ((ERRORS)); then
    die "$ERRORS failed requests (socket errors or non-2xx) across the rounds; results are not valid"
fi
if ((FALLBACKS * 100 > CLUSTER_DECISIONS * MAX_FALLBACK_PCT)); then
    die "$FALLBACKS of $CLUSTER_DECISIONS cluster decisions fell back to local (over" \
        "$MAX_FALLBACK_PCT%); the cluster figures are not valid"
fi
