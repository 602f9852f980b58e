#!/usr/bin/env bash
# Proxy benchmark: our gateway vs NGINX in front of the same upstream, on this
# machine, loopback only. See bench/README.md for the knobs and the method.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WORKERS=${BENCH_WORKERS:-1}
ROUNDS=${BENCH_ROUNDS:-5}
CONNS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
THREADS=${BENCH_WRK_THREADS:-1}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
EXTRA_YAML=${BENCH_EXTRA_GATEWAY_YAML:-}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
OUT_DIR=$ROOT/target/bench
OUT_JSON=$OUT_DIR/proxy.json
READY_TIMEOUT=30

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
FAIL_LOGS=(nginx/nginx-error.log)

# ---------------------------------------------------------------- checks
for v in WORKERS ROUNDS CONNS THREADS UP_WORKERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
DUR_S=$(dur_secs "$DURATION")
WARM_S=$(dur_secs "$WARMUP")
if [[ -n $EXTRA_YAML ]]; then
    [[ -r $EXTRA_YAML ]] || die "BENCH_EXTRA_GATEWAY_YAML=$EXTRA_YAML is not a readable file"
    EXTRA_YAML=$(cd "$(dirname "$EXTRA_YAML")" && pwd)/$(basename "$EXTRA_YAML")
fi

# ---------------------------------------------------------------- build and tools
build_release demo_upstream -- "$UPSTREAM_BIN"

ensure_proxy_bench_tools

if pgrep -x nginx >/dev/null; then
    say "WARNING: an nginx not started by this script is running; it adds noise"
fi

# ---------------------------------------------------------------- CPU layout
# The proxy under test gets CPUs of its own; the upstream and wrk share CPU 0.
# Both proxies get the same CPUs and worker count, and only one is loaded at a
# time, so neither competes with the load generator for its core.
NCPU=$(nproc)
pin_layout "proxy" "upstream + wrk"
PROXY_PIN=("${SUT_PIN[@]}")

# ---------------------------------------------------------------- setup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench.XXXXXX")
# nginx workers drop to an unprivileged user when the master runs as root;
# they must be able to reach the temp dirs inside.
chmod 755 "$TMP"
mkdir -p "$TMP/nginx" "$OUT_DIR"
rm -f "$OUT_JSON"

read -r P_UP P_GW P_ADMIN P_NGINX < <(free_ports 4)

write_gateway_conf "$TMP/gateway.yaml" "$P_GW" "$P_ADMIN" "$WORKERS"
if [[ -n $EXTRA_YAML ]]; then
    printf '\n# appended from %s\n' "$EXTRA_YAML" >>"$TMP/gateway.yaml"
    cat "$EXTRA_YAML" >>"$TMP/gateway.yaml"
fi

write_nginx_conf on

nginx_args "$TMP"

# ---------------------------------------------------------------- start
say "work dir $TMP; ports upstream=$P_UP gateway=$P_GW admin=$P_ADMIN nginx=$P_NGINX"
start_upstream

start gateway "$TMP/gateway-access.log" \
    "${PROXY_PIN[@]}" "$GATEWAY_BIN" --config "$TMP/gateway.yaml"
wait_ready gateway "http://127.0.0.1:$P_ADMIN/health/ready"

start nginx "$TMP/nginx.out" "${PROXY_PIN[@]}" "$NGINX" "${NGINX_ARGS[@]}"
wait_ready nginx "http://127.0.0.1:$P_NGINX/demo/hello"

declare -A URL=(
    [gateway]="http://127.0.0.1:$P_GW/demo/hello"
    [nginx]="http://127.0.0.1:$P_NGINX/demo/hello"
)
declare -A ACCESS_LOG=(
    [gateway]="$TMP/gateway-access.log"
    [nginx]="$TMP/nginx-access.log"
)
PROXIES=(gateway nginx)

# Both proxies must return exactly what the upstream returns, or we would be
# timing an error page.
for p in "${PROXIES[@]}"; do
    body=$(http_get "${URL[$p]}") || die "$p: GET ${URL[$p]} failed"
    [[ $body == "$UP_BODY" ]] || die "$p: body differs from upstream's: '$body' vs '$UP_BODY'"
done

# ---------------------------------------------------------------- measure
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results.tsv
ERRORS=0

# run_wrk PROXY DURATION OUT_FILE -> sets LAST (parsed fields + cpu%, log lines)
run_wrk() {
    local proxy=$1 dur=$2 out=$3 secs t0 t1
    secs=$(dur_secs "$dur")
    : >"${ACCESS_LOG[$proxy]}"
    t0=$(cpu_ticks "${PID[$proxy]}")
    # In the background and waited for: a trapped Ctrl-C interrupts `wait`
    # at once, whereas a foreground wrk would swallow it and exit 0.
    "${LOAD_PIN[@]}" timeout --kill-after=5 $((secs + 30)) \
        wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "${URL[$proxy]}" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk against $proxy failed: $(tail -n 5 "$out")"
    WRK_PID=""
    t1=$(cpu_ticks "${PID[$proxy]}")
    kill -0 "${PID[$proxy]}" 2>/dev/null || die "$proxy died during the run"
    local parsed
    parsed=$(parse_wrk <"$out") || die "could not parse wrk output for $proxy: $(cat "$out")"
    local rps p50 p99 reqs wsecs sock non2xx
    read -r rps p50 p99 reqs wsecs sock non2xx <<<"$parsed"
    # The gateway batches log writes (flushed every 50 ms): let the last
    # batch land before counting lines.
    sleep 0.3
    local lines
    lines=$(wc -l <"${ACCESS_LOG[$proxy]}")
    : >"${ACCESS_LOG[$proxy]}"
    LAST=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$wsecs" -v r="$reqs" \
        'BEGIN { c = t / hz; printf "%.0f %.0f", (s > 0 ? 100 * c / s : 0), (c > 0 ? r / c : 0) }')
    LAST="$rps $p50 $p99 $reqs $sock $non2xx $LAST $lines"
}

say "setup: workers=$WORKERS (gateway and nginx), upstream workers=$UP_WORKERS," \
    "wrk -t$THREADS -c$CONNS -d$DURATION, rounds=$ROUNDS, warm-up=$WARMUP"
say "pinning: $PINNING"
say "expect about $((2 * (WARM_S + ROUNDS * DUR_S) + 10))s"

for p in "${PROXIES[@]}"; do
    say "warm-up $p ($WARMUP)"
    run_wrk "$p" "$WARMUP" "$TMP/wrk-warmup-$p.txt"
    read -r _ _ _ _ sock non2xx _ <<<"$LAST"
    ((sock + non2xx == 0)) || die "$p: $sock socket errors, $non2xx non-2xx during warm-up"
done

printf '\n%-5s %-8s %11s %9s %9s %10s %6s %9s %11s %7s\n' \
    round proxy 'req/s' 'p50_ms' 'p99_ms' requests 'cpu%' 'req/cpu_s' 'log_lines' errors
for ((r = 1; r <= ROUNDS; r++)); do
    for p in "${PROXIES[@]}"; do
        run_wrk "$p" "$DURATION" "$TMP/wrk-$r-$p.txt"
        read -r rps p50 p99 reqs sock non2xx cpu rpc lines <<<"$LAST"
        errs=$((sock + non2xx))
        ERRORS=$((ERRORS + errs))
        printf '%-5s %-8s %11s %9s %9s %10s %6s %9s %11s %7s\n' \
            "$r" "$p" "$rps" "$p50" "$p99" "$reqs" "$cpu" "$rpc" "$lines" "$errs"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$r" "$p" "$rps" "$p50" "$p99" "$reqs" "$sock" "$non2xx" "$cpu" "$rpc" "$lines" >>"$RESULTS"
        if ((errs)); then
            say "round $r $p: $sock socket errors, $non2xx non-2xx responses:"
            grep -E 'Socket errors|Non-2xx' "$TMP/wrk-$r-$p.txt" || true
        fi
    done
done

# ---------------------------------------------------------------- summary
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo none)
# Values go to Python through the environment, never pasted into its source.
B_ROUNDS=$ROUNDS B_WORKERS=$WORKERS B_UP_WORKERS=$UP_WORKERS B_THREADS=$THREADS \
B_CONNS=$CONNS B_DURATION=$DURATION B_WARMUP=$WARMUP B_PINNING=$PINNING B_NCPU=$NCPU \
B_NGINX=$NGINX_VERSION B_WRK=$WRK_VERSION B_EXTRA=$EXTRA_YAML B_GIT=$GIT_REV \
    python3 - "$RESULTS" "$OUT_JSON" <<'EOF'
import json, os, statistics, sys, time

env = os.environ
rows = []
with open(sys.argv[1]) as f:
    for line in f:
        r, proxy, rps, p50, p99, reqs, sock, non2xx, cpu, rpc, lines = line.rstrip("\n").split("\t")
        rows.append(dict(round=int(r), proxy=proxy, rps=float(rps), p50_ms=float(p50),
                         p99_ms=float(p99), requests=int(reqs), socket_errors=int(sock),
                         non_2xx=int(non2xx), cpu_pct=float(cpu), req_per_cpu_s=float(rpc),
                         log_lines=int(lines)))

summary = {}
for proxy in ("gateway", "nginx"):
    mine = [r for r in rows if r["proxy"] == proxy]
    med = lambda k: statistics.median(r[k] for r in mine)
    summary[proxy] = dict(rps_median=round(med("rps"), 2), p50_ms_median=round(med("p50_ms"), 3),
                          p99_ms_median=round(med("p99_ms"), 3), cpu_pct_median=med("cpu_pct"),
                          req_per_cpu_s_median=med("req_per_cpu_s"),
                          errors=sum(r["socket_errors"] + r["non_2xx"] for r in mine))
g, n = summary["gateway"], summary["nginx"]
ratio = lambda a, b: round(a / b, 3) if b else None
ratios = dict(rps=ratio(g["rps_median"], n["rps_median"]),
              p99=ratio(g["p99_ms_median"], n["p99_ms_median"]),
              req_per_cpu_s=ratio(g["req_per_cpu_s_median"], n["req_per_cpu_s_median"]))

# Each round's nginx run follows its gateway run: the ratio within a round
# shares the machine's state of that moment, so its median over rounds
# resists slow drifts (other tenants, CPU boost) better than the ratio of
# the medians.
by_round = {}
for r in rows:
    by_round.setdefault(r["round"], {})[r["proxy"]] = r["rps"]
ratios["rps_paired_median"] = round(statistics.median(
    v["gateway"] / v["nginx"] for v in by_round.values() if v.get("nginx") and "gateway" in v), 3)

print()
print(f"{'median':<8} {'req/s':>11} {'p50_ms':>9} {'p99_ms':>9} {'cpu%':>6} {'req/cpu_s':>9}"
      f"   (over {env['B_ROUNDS']} rounds)")
for proxy in ("gateway", "nginx"):
    s = summary[proxy]
    print(f"{proxy:<8} {s['rps_median']:>11.2f} {s['p50_ms_median']:>9.3f} {s['p99_ms_median']:>9.3f}"
          f" {s['cpu_pct_median']:>6.0f} {s['req_per_cpu_s_median']:>9.0f}")
print(f"gateway/nginx: req/s {ratios['rps']}  p99 {ratios['p99']}  req/cpu_s {ratios['req_per_cpu_s']}")
print(f"gateway/nginx req/s within each round, median: {ratios['rps_paired_median']}")
unsaturated = [p for p in ("gateway", "nginx") if summary[p]["cpu_pct_median"] < 90]
if unsaturated:
    print(f"NOTE: {' and '.join(unsaturated)}: under 90% of the proxy CPU used; the load side "
          "(wrk + upstream) limited req/s, so req/cpu_s is the fairer comparison")
for r in rows:
    if r["log_lines"] < r["requests"]:
        print(f"WARNING: round {r['round']} {r['proxy']}: {r['log_lines']} access-log lines for "
              f"{r['requests']} requests; it is not doing the same logging work")
print(f"RESULT gateway_rps_median={g['rps_median']} nginx_rps_median={n['rps_median']} "
      f"ratio={ratios['rps']} gateway_p99_ms={g['p99_ms_median']} nginx_p99_ms={n['p99_ms_median']} "
      f"p99_ratio={ratios['p99']}")

doc = dict(
    benchmark="proxy", ok=(g["errors"] + n["errors"] == 0),
    time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git_rev=env["B_GIT"],
    setup=dict(workers=int(env["B_WORKERS"]), upstream_workers=int(env["B_UP_WORKERS"]),
               wrk_threads=int(env["B_THREADS"]), connections=int(env["B_CONNS"]),
               duration=env["B_DURATION"], warmup=env["B_WARMUP"], rounds=int(env["B_ROUNDS"]),
               pinning=env["B_PINNING"], nproc=int(env["B_NCPU"]), path="/demo/hello -> /hello",
               nginx=env["B_NGINX"], wrk=env["B_WRK"], extra_gateway_yaml=env["B_EXTRA"] or None),
    summary=summary, ratio_gateway_over_nginx=ratios, rounds=rows)
with open(sys.argv[2], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
say "wrote ${OUT_JSON#"$ROOT"/}"

if ((ERRORS)); then
    die "$ERRORS failed requests (socket errors or non-2xx) across the rounds; results are not valid"
fi
