#!/usr/bin/env bash
# User-space instructions per proxied request, gateway vs NGINX, counted by
# valgrind's callgrind: the same figure on a quiet or a noisy machine, so
# that a code change can be judged without wall-clock noise. It does not
# count kernel work (system calls, TCP), which bench/run.sh covers. See
# bench/README.md ("Instructions per request").
#
# BENCH_CPU_SPLIT=1: the same setup without valgrind, measuring instead the
# user and system CPU time per request of each proxy (/proc, alternating
# rounds): what the instructions cost in time, and the kernel's share
# (bench/README.md, "CPU time per request").
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WORKERS=1
UP_WORKERS=1
CONNS=${BENCH_CONNECTIONS:-16}
DURATION=${BENCH_DURATION:-8s}
WARMUP=${BENCH_WARMUP:-3s}
# A cookie on every request (both proxies): set it to compare with the
# session bench's request shape.
COOKIE=${BENCH_COOKIE:-}
# BENCH_SESSION=1: also count the gateway's session route (bench/auth.sh's
# setup: Redis-backed sessions, one session minted with mint_session, a
# 10 s cache); every request then carries that session's cookie.
SESSION=${BENCH_SESSION:-0}
# BENCH_RATELIMIT=1: also count two rate-limited routes (bench/ratelimit.sh's
# policies: per client IP, a limit never reached): `local` decided in the
# worker, `cluster` through the RateLimiter actor and our own redis-server.
RATELIMIT=${BENCH_RATELIMIT:-0}
CPU_SPLIT=${BENCH_CPU_SPLIT:-0}
ROUNDS=${BENCH_ROUNDS:-3}
MINT_BIN=${BENCH_MINT_BIN:-$ROOT/target/release/examples/mint_session}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
OUT_DIR=$ROOT/target/bench
OUT_JSON=$OUT_DIR/instructions.json
# Programs under valgrind start 20-50 times slower.
READY_TIMEOUT=60

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
FAIL_LOGS=(nginx/nginx-error.log)

[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS must be a positive integer (got '$CONNS')"
dur_secs "$DURATION" >/dev/null
dur_secs "$WARMUP" >/dev/null

ensure_tools() {
    local pkgs=()
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || pkgs+=("nginx-light|nginx")
    command -v wrk >/dev/null || pkgs+=(wrk)
    [[ $CPU_SPLIT == 1 ]] || command -v callgrind_control >/dev/null || pkgs+=(valgrind)
    command -v python3 >/dev/null || pkgs+=(python3)
    ((${#pkgs[@]})) || return 0
    apt_install "${pkgs[@]}"
}

[[ $SESSION =~ ^[01]$ ]] || die "BENCH_SESSION must be 0 or 1 (got '$SESSION')"
[[ $RATELIMIT =~ ^[01]$ ]] || die "BENCH_RATELIMIT must be 0 or 1 (got '$RATELIMIT')"
[[ $CPU_SPLIT =~ ^[01]$ ]] || die "BENCH_CPU_SPLIT must be 0 or 1 (got '$CPU_SPLIT')"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer (got '$ROUNDS')"
if [[ $SESSION == 1 ]]; then
    build_release demo_upstream mint_session -- "$UPSTREAM_BIN" "$MINT_BIN"
else
    build_release demo_upstream -- "$UPSTREAM_BIN"
fi
ensure_tools
NEED_REDIS=0
[[ $SESSION == 0 && $RATELIMIT == 0 ]] || NEED_REDIS=1
if [[ $NEED_REDIS == 1 ]] && ! command -v redis-server >/dev/null; then
    apt_install redis-server
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

pin_layout "proxy (under callgrind)" "upstream + wrk"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-instr.XXXXXX")
chmod 755 "$TMP"
mkdir -p "$TMP/nginx" "$OUT_DIR"
rm -f "$OUT_JSON"
read -r P_UP P_GW P_ADMIN P_NGINX P_REDIS < <(free_ports 5)

cat >"$TMP/gateway.yaml" <<EOF
server: {listen: "127.0.0.1:$P_GW", workers: 1}
admin: {listen: "127.0.0.1:$P_ADMIN"}
logging: {level: info, format: json}
upstreams: {demo: {targets: ["http://127.0.0.1:$P_UP"]}}
routes:
  - {name: demo, path_prefix: /demo, strip_prefix: /demo, upstream: demo}
EOF
if [[ $SESSION == 1 ]]; then
    SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
    cat >>"$TMP/gateway.yaml" <<EOF
  - {name: sess, path_prefix: /sess, strip_prefix: /sess, upstream: demo, auth: session}
$(session_auth_yaml "$SECRET" 10)
EOF
fi
if [[ $RATELIMIT == 1 ]]; then
    cat >>"$TMP/gateway.yaml" <<EOF
  - {name: local, path_prefix: /local, strip_prefix: /local, upstream: demo, rate_limit: [per_ip_local]}
  - {name: cluster, path_prefix: /cluster, strip_prefix: /cluster, upstream: demo, rate_limit: [per_ip_cluster]}
rate_limits:
  per_ip_local: {requests: 100000000, period_secs: 1, burst: 0, key: ip, scope: local}
  per_ip_cluster: {requests: 100000000, period_secs: 1, burst: 0, key: ip, scope: cluster}
EOF
    # The session mode's Redis serves both.
    [[ $SESSION == 1 ]] || echo "redis: {url: \"redis://127.0.0.1:$P_REDIS/0\", pool_size: 16, command_timeout_ms: 100}" >>"$TMP/gateway.yaml"
fi

write_nginx_conf off
NGINX_ARGS=(-p "$TMP/nginx/" -c "$TMP/nginx.conf" -e "$TMP/nginx/nginx-error.log")
"$NGINX" -t -q "${NGINX_ARGS[@]}" 2>"$TMP/nginx-check.err" ||
    die "nginx rejected the generated config: $(cat "$TMP/nginx-check.err")"

[[ $NEED_REDIS == 0 ]] || start_redis
start_upstream
VG=(valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p.out")
[[ $CPU_SPLIT == 0 ]] || VG=()
start gateway "$TMP/gateway-access.log" "${SUT_PIN[@]}" "${VG[@]}" "$GATEWAY_BIN" --config "$TMP/gateway.yaml"
wait_ready gateway "http://127.0.0.1:$P_ADMIN/health/ready"
start nginx "$TMP/nginx.out" "${SUT_PIN[@]}" "${VG[@]}" "$NGINX" "${NGINX_ARGS[@]}"
wait_ready nginx "http://127.0.0.1:$P_NGINX/demo/hello"

declare -A URL=(
    [gateway]="http://127.0.0.1:$P_GW/demo/hello"
    [nginx]="http://127.0.0.1:$P_NGINX/demo/hello"
    [session]="http://127.0.0.1:$P_GW/sess/hello"
    [local]="http://127.0.0.1:$P_GW/local/hello"
    [cluster]="http://127.0.0.1:$P_GW/cluster/hello"
)
if [[ $SESSION == 1 ]]; then
    SID=$(timeout 30 "$MINT_BIN" --redis "redis://127.0.0.1:$P_REDIS/0" --secret "$SECRET" \
        --subject bench-user 2>"$TMP/mint.err") || die "mint_session failed: $(cat "$TMP/mint.err")"
    COOKIE="gateway_session=$SID"
fi
WRK_HDR=()
[[ -z $COOKIE ]] || WRK_HDR=(-H "Cookie: $COOKIE")

load() { # PROXY DURATION OUT
    "${LOAD_PIN[@]}" timeout --kill-after=5 $(($(dur_secs "$2") + 60)) \
        wrk -t1 -c"$CONNS" -d"$2" --latency "${WRK_HDR[@]}" "${URL[$1]}" >"$3" 2>&1 ||
        die "wrk against $1 failed: $(tail -n 5 "$3")"
}

# BENCH_CPU_SPLIT=1: user and system CPU microseconds per request, each
# proxy in turn for ROUNDS rounds; medians and ratios, then exit.
if [[ $CPU_SPLIT == 1 ]]; then
    proxies=(gateway nginx)
    [[ $SESSION == 0 ]] || proxies+=(session)
    [[ $RATELIMIT == 0 ]] || proxies+=(local cluster)
    say "setup: $PINNING; wrk -t1 -c$CONNS -d$DURATION after a $WARMUP warm-up, $ROUNDS alternating rounds${COOKIE:+, with a cookie}"
    : >"$TMP/rounds.txt"
    for round in $(seq "$ROUNDS"); do
        for proxy in "${proxies[@]}"; do
            pid=${PID[$proxy]:-${PID[gateway]}}
            load "$proxy" "$WARMUP" "$TMP/wrk-warm.txt"
            read -r u0 s0 < <(user_sys_ticks "$pid")
            load "$proxy" "$DURATION" "$TMP/wrk-$proxy.txt"
            read -r u1 s1 < <(user_sys_ticks "$pid")
            read -r _ _ _ reqs _ sock non2xx < <(parse_wrk <"$TMP/wrk-$proxy.txt")
            ((sock + non2xx == 0)) || die "$proxy: $sock socket errors, $non2xx non-2xx responses"
            ((reqs > 0)) || die "$proxy: no requests completed"
            echo "$round $proxy $reqs $((u1 - u0)) $((s1 - s0))" >>"$TMP/rounds.txt"
        done
    done
    B_HZ=$(getconf CLK_TCK) B_GIT=$(git rev-parse --short HEAD 2>/dev/null || echo none) \
    B_CONNS=$CONNS B_DURATION=$DURATION \
        python3 - "$TMP/rounds.txt" "$OUT_DIR/cpu_split.json" <<'EOF'
import json, os, statistics, sys, time
e = os.environ
hz = int(e["B_HZ"])
per = {}
print(f"{'round':<6} {'proxy':<8} {'requests':>9} {'user_us':>8} {'sys_us':>8}")
for line in open(sys.argv[1]):
    rnd, proxy, reqs, user, system = line.split()
    u = int(user) / hz * 1e6 / int(reqs)
    s = int(system) / hz * 1e6 / int(reqs)
    per.setdefault(proxy, []).append((u, s))
    print(f"{rnd:<6} {proxy:<8} {int(reqs):>9} {u:>8.2f} {s:>8.2f}")
med = {p: (statistics.median(u for u, _ in v), statistics.median(s for _, s in v))
       for p, v in per.items()}
print(f"\nmedian, microseconds of CPU per request ({len(per['gateway'])} rounds)")
for p, (u, s) in med.items():
    print(f"{p:<8} user {u:6.2f}  system {s:6.2f}  total {u + s:6.2f}")
g, n = med["gateway"], med["nginx"]
print(f"gateway/nginx: user {g[0] / n[0]:.2f}x  system {g[1] / n[1]:.2f}x  "
      f"total {(g[0] + g[1]) / (n[0] + n[1]):.2f}x")
print(f"RESULT gateway_user_us={g[0]:.2f} gateway_sys_us={g[1]:.2f} nginx_user_us={n[0]:.2f} "
      f"nginx_sys_us={n[1]:.2f} user_ratio={g[0] / n[0]:.3f} "
      f"total_ratio={(g[0] + g[1]) / (n[0] + n[1]):.3f}")
doc = dict(benchmark="cpu_split", time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           git_rev=e["B_GIT"], connections=int(e["B_CONNS"]), duration=e["B_DURATION"],
           median_us={p: dict(user=round(u, 3), system=round(s, 3)) for p, (u, s) in med.items()},
           rounds=per)
json.dump(doc, open(sys.argv[2], "w"), indent=2)
EOF
    say "wrote target/bench/cpu_split.json"
    exit 0
fi

# measure PROXY: sets MEASURED="requests instructions"; counters zeroed
# after a warm-up, dumped after the measured load; wrk counts the requests.
measure() {
    local proxy=$1 pid=${PID[$1]:-${PID[gateway]}} dump parsed reqs sock non2xx
    load "$proxy" "$WARMUP" "$TMP/wrk-warm-$proxy.txt"
    callgrind_control -z "$pid" >/dev/null
    load "$proxy" "$DURATION" "$TMP/wrk-$proxy.txt"
    callgrind_control -d "$pid" >/dev/null
    parsed=$(parse_wrk <"$TMP/wrk-$proxy.txt") || die "could not parse wrk output for $proxy"
    read -r _ _ _ reqs _ sock non2xx <<<"$parsed"
    ((sock + non2xx == 0)) || die "$proxy: $sock socket errors, $non2xx non-2xx responses"
    ((reqs > 0)) || die "$proxy: no requests completed"
    dump=$(ls -t "$TMP"/cg."$pid".out.* 2>/dev/null | head -n1)
    [[ -n $dump ]] || die "$proxy: callgrind wrote no dump"
    MEASURED="$reqs $(sed -n 's/^totals: *//p' "$dump" | awk '{print $1}')"
    # BENCH_KEEP_PROFILE=DIR keeps each proxy's callgrind dump, for
    # callgrind_annotate (which functions a change made dearer).
    if [[ -n ${BENCH_KEEP_PROFILE:-} ]]; then
        mkdir -p "$BENCH_KEEP_PROFILE"
        cp "$dump" "$BENCH_KEEP_PROFILE/callgrind.$proxy.out"
    fi
}

say "setup: proxies under callgrind ($PINNING); wrk -t1 -c$CONNS -d$DURATION after a $WARMUP warm-up${COOKIE:+, with a cookie}"
measure gateway
read -r G_REQS G_IR <<<"$MEASURED"
measure nginx
read -r N_REQS N_IR <<<"$MEASURED"
S_REQS=0 S_IR=0
if [[ $SESSION == 1 ]]; then
    measure session
    read -r S_REQS S_IR <<<"$MEASURED"
fi
L_REQS=0 L_IR=0 C_REQS=0 C_IR=0
if [[ $RATELIMIT == 1 ]]; then
    measure local
    read -r L_REQS L_IR <<<"$MEASURED"
    measure cluster
    read -r C_REQS C_IR <<<"$MEASURED"
fi

B_G_REQS=$G_REQS B_G_IR=$G_IR B_N_REQS=$N_REQS B_N_IR=$N_IR B_CONNS=$CONNS \
B_S_REQS=$S_REQS B_S_IR=$S_IR B_L_REQS=$L_REQS B_L_IR=$L_IR B_C_REQS=$C_REQS B_C_IR=$C_IR B_DURATION=$DURATION B_COOKIE=${COOKIE:+yes} B_GIT=$(git rev-parse --short HEAD 2>/dev/null || echo none) \
    python3 - "$OUT_JSON" <<'EOF'
import json, os, sys, time
e = os.environ
g = int(e["B_G_IR"]) / int(e["B_G_REQS"])
n = int(e["B_N_IR"]) / int(e["B_N_REQS"])
print(f"\n{'proxy':<8} {'requests':>9} {'instructions/request':>21}")
print(f"{'gateway':<8} {e['B_G_REQS']:>9} {g:>21,.0f}")
print(f"{'nginx':<8} {e['B_N_REQS']:>9} {n:>21,.0f}")
print(f"gateway/nginx: {g / n:.2f}x the user-space instructions per request")
session = None
if int(e["B_S_REQS"]):
    session = int(e["B_S_IR"]) / int(e["B_S_REQS"])
    print(f"{'session':<8} {e['B_S_REQS']:>9} {session:>21,.0f}   (the gateway's session route)")
    print(f"session route: +{session - g:,.0f} instructions per request over the open route")
limited = {}
for name, tag, what in (("local", "L", "a local rate limit"), ("cluster", "C", "a cluster rate limit, Redis")):
    if int(e[f"B_{tag}_REQS"]):
        limited[name] = (int(e[f"B_{tag}_REQS"]), int(e[f"B_{tag}_IR"]))
        per = limited[name][1] / limited[name][0]
        print(f"{name:<8} {limited[name][0]:>9} {per:>21,.0f}   ({what}: +{per - g:,.0f} over the open route)")
if "local" in limited and "cluster" in limited:
    lo, cl = (v[1] / v[0] for v in (limited["local"], limited["cluster"]))
    print(f"cluster/local: {cl / lo:.3f}x the instructions per request")
print(f"RESULT gateway_instructions_per_request={g:.0f} nginx_instructions_per_request={n:.0f} "
      f"ratio={g / n:.3f}" + (f" session_instructions_per_request={session:.0f}" if session else "")
      + "".join(f" {k}_instructions_per_request={v[1] / v[0]:.0f}" for k, v in limited.items()))
doc = dict(benchmark="instructions", time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           git_rev=e["B_GIT"], connections=int(e["B_CONNS"]), duration=e["B_DURATION"],
           cookie=bool(e["B_COOKIE"]),
           gateway=dict(requests=int(e["B_G_REQS"]), instructions=int(e["B_G_IR"]),
                        per_request=round(g)),
           nginx=dict(requests=int(e["B_N_REQS"]), instructions=int(e["B_N_IR"]),
                      per_request=round(n)),
           ratio_gateway_over_nginx=round(g / n, 3))
if session:
    doc["session"] = dict(requests=int(e["B_S_REQS"]), instructions=int(e["B_S_IR"]),
                          per_request=round(session))
for name, (reqs, ir) in limited.items():
    doc[name] = dict(requests=reqs, instructions=ir, per_request=round(ir / reqs))
with open(sys.argv[1], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
say "wrote ${OUT_JSON#"$ROOT"/}"
