#!/usr/bin/env bash
# Faults and hostile clients, measured (the figures of the faults issue):
#   1. requests lost per SIGTERM: under wrk (it reconnects whatever readiness
#      says) and under load-balancer-like clients (they stop at readiness
#      503), with server.drain_delay_secs 0 and 1;
#   2. non-2xx answers per upstream kill (kill -9 of one of two targets under
#      wrk);
#   3. how long a client sending a request head one byte per second holds a
#      kept-alive connection.
# BENCH_GATEWAY_BIN compares another build (e.g. an older commit's; one
# without drain_delay_secs needs BENCH_FAULT_DELAYS=0). BENCH_FAULT_ROUNDS
# rounds of each (default 3). See bench/README.md.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${BENCH_FAULT_ROUNDS:-3}
DELAYS=${BENCH_FAULT_DELAYS:-0 1}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
READY_TIMEOUT=30

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_FAULT_ROUNDS must be a positive integer (got '$ROUNDS')"
build_release demo_upstream -- "$UPSTREAM_BIN"
command -v wrk >/dev/null || apt_install wrk
command -v python3 >/dev/null || apt_install python3

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-faults.XXXXXX")
read -r P_UP P_UP2 P_GW P_ADMIN < <(free_ports 4)

# gateway NAME [--set ...]: starts the gateway on $P_GW/$P_ADMIN in front
# of the targets in $TARGETS; waits until it is ready.
gateway() {
    local name=$1
    shift
    cat >"$TMP/$name.yaml" <<EOF
server: {listen: "127.0.0.1:$P_GW", workers: 2, shutdown_timeout_secs: 10}
admin: {listen: "127.0.0.1:$P_ADMIN"}
logging: {access_log: false}
upstreams: {u: {targets: [$TARGETS]}}
routes: [{name: r, path_prefix: /, upstream: u}]
EOF
    start "$name" "$TMP/$name.out" "$GATEWAY_BIN" --config "$TMP/$name.yaml" "$@"
    wait_ready "$name" "http://127.0.0.1:$P_ADMIN/health/ready"
}

wrk_errors() { # FILE -> "read=N non2xx=N"
    local read non2xx
    read=$(sed -n 's/.*Socket errors:.* read \([0-9]*\),.*/\1/p' "$1")
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$1")
    echo "read=${read:-0} non2xx=${non2xx:-0}"
}

start upstream "$TMP/upstream.out" "$UPSTREAM_BIN" --listen "127.0.0.1:$P_UP" --workers 1
wait_ready upstream "http://127.0.0.1:$P_UP/hello"
TARGETS="\"http://127.0.0.1:$P_UP\""

say "1. requests lost per SIGTERM (64 connections, signal after 2 s)"
for delay in $DELAYS; do
    # No --set for 0, so that a build without the key can be measured too.
    drain=()
    ((delay == 0)) || drain=(--set "server.drain_delay_secs=$delay")
    for round in $(seq "$ROUNDS"); do
        gateway "wrk-$delay-$round" "${drain[@]}"
        wrk -t2 -c64 -d4s "http://127.0.0.1:$P_GW/hello" >"$TMP/wrk-$delay-$round.txt" 2>&1 &
        load=$!
        sleep 2
        stop_pid "${PID[wrk-$delay-$round]}"
        wait "$load" || true
        say "   wrk, drain_delay_secs=$delay, round $round: $(wrk_errors "$TMP/wrk-$delay-$round.txt")"
    done
    for round in $(seq "$ROUNDS"); do
        gateway "lb-$delay-$round" "${drain[@]}"
        result=$(python3 bench/fault_clients.py balancer "$P_GW" "$P_ADMIN" "${PID[lb-$delay-$round]}" 64)
        say "   balancer clients, drain_delay_secs=$delay, round $round: $result"
        stop_pid "${PID[lb-$delay-$round]}"
    done
done

say "2. non-2xx answers per upstream kill (kill -9 of one of two targets after 2 s)"
for round in $(seq "$ROUNDS"); do
    start "victim-$round" "$TMP/victim-$round.out" "$UPSTREAM_BIN" --listen "127.0.0.1:$P_UP2" --workers 1
    wait_ready "victim-$round" "http://127.0.0.1:$P_UP2/hello"
    TARGETS="\"http://127.0.0.1:$P_UP\", \"http://127.0.0.1:$P_UP2\"" gateway "kill-$round"
    wrk -t2 -c64 -d4s "http://127.0.0.1:$P_GW/hello" >"$TMP/kill-$round.txt" 2>&1 &
    load=$!
    sleep 2
    kill -9 "${PID[victim-$round]}"
    wait "$load" || true
    say "   round $round: $(wrk_errors "$TMP/kill-$round.txt")"
    stop_pid "${PID[kill-$round]}"
done

say "3. a request head one byte per second on a kept-alive connection (client_request_timeout_ms 5000)"
gateway slow
say "   $(python3 bench/fault_clients.py slow "$P_GW")"
stop_pid "${PID[slow]}"
