#!/usr/bin/env bash
# Matrix: the gateway vs NGINX in front of the same upstream, doing the same
# work (JSON access log, X-Forwarded-*, X-Request-Id, as in bench/run.sh), over
# the scenarios of the performance issue. Each scenario alternates gateway,
# nginx, gateway, nginx... for BENCH_ROUNDS rounds and takes medians:
#   sizes    responses of 100 B, 16 KiB and 1 MiB   (GET /demo/bytes/N)
#   uploads  1 MiB request bodies                   (POST /demo/sink)
#   conns    1,024 connections: errors, peak RSS    (GET /demo/hello)
#   workers  2 workers vs 1: the scaling factor     (GET /demo/hello)
# BENCH_MATRIX_ONLY=sizes,conns picks some. Prints a Markdown table and writes
# target/bench/matrix.{json,md,png}. Loopback only; every process it starts
# is stopped on exit. See bench/README.md, "Matrix".
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-2s}
CONNS=${BENCH_CONNECTIONS:-64}
MANY_CONNS=${BENCH_MATRIX_CONNS:-1024}
THREADS=${BENCH_WRK_THREADS:-1}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
SIZES=${BENCH_MATRIX_SIZES:-100,16384,1048576}
UPLOAD_BYTES=${BENCH_MATRIX_UPLOAD_BYTES:-1048576}
ONLY=${BENCH_MATRIX_ONLY:-sizes,uploads,conns,workers}
NGINX_BUFFERING=${BENCH_MATRIX_NGINX_BUFFERING:-0}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$ROOT/target/release/gateway}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$ROOT/target/release/examples/demo_upstream}
OUT_DIR=$ROOT/target/bench
OUT_JSON=$OUT_DIR/matrix.json
OUT_MD=$OUT_DIR/matrix.md
OUT_PNG=$OUT_DIR/matrix.png
READY_TIMEOUT=30
# Request bodies both proxies accept: the gateway's server.max_body_bytes and
# NGINX's client_max_body_size (16 MiB; the gateway's default is 10 MiB).
MAX_BODY=16777216
# The largest body demo_upstream's GET /bytes/{n} answers.
BYTES_CAP=8388608
# The base layout: 1 worker per proxy (scenario workers adds 2).
WORKERS=1
SCENARIOS=(sizes uploads conns workers)

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
FAIL_LOGS=('*/nginx/nginx-error.log')

# ---------------------------------------------------------------- checks
for v in ROUNDS CONNS MANY_CONNS THREADS UP_WORKERS UPLOAD_BYTES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((CONNS >= THREADS && MANY_CONNS >= THREADS)) || die "connection counts must be at least BENCH_WRK_THREADS"
((UPLOAD_BYTES <= MAX_BODY)) || die "BENCH_MATRIX_UPLOAD_BYTES must be at most $MAX_BODY"
IFS=',' read -r -a SIZE_LIST <<<"$SIZES"
((${#SIZE_LIST[@]})) || die "BENCH_MATRIX_SIZES is empty"
for n in "${SIZE_LIST[@]}"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > BYTES_CAP)); then
        die "BENCH_MATRIX_SIZES: '$n' is not a size in bytes from 1 to $BYTES_CAP"
    fi
done
declare -A WANT=()
IFS=',' read -r -a only <<<"$ONLY"
for s in "${only[@]}"; do
    s=${s// /}
    [[ -n $s ]] || continue
    [[ " ${SCENARIOS[*]} " == *" $s "* ]] ||
        die "BENCH_MATRIX_ONLY: unknown scenario '$s' (choose from: ${SCENARIOS[*]})"
    WANT[$s]=1
done
((${#WANT[@]})) || die "BENCH_MATRIX_ONLY names no scenario (choose from: ${SCENARIOS[*]})"
DUR_S=$(dur_secs "$DURATION")
WARM_S=$(dur_secs "$WARMUP")

# The command as given, for the report: every BENCH_* variable set, then the script.
CMD=""
while IFS= read -r v; do
    if [[ ${!v} =~ ^[][A-Za-z0-9_./,:=+@%-]*$ ]]; then
        CMD+="$v=${!v} "
    else
        CMD+="$v=$(printf '%q' "${!v}") "
    fi
done < <(compgen -e | grep -E '^(BENCH_|GATEWAY_TOOLS_DIR$)' | sort || true)
CMD+="bash bench/matrix.sh"
[[ -z ${MAKELEVEL:-} ]] || CMD+="  (through make bench-matrix)"

# ---------------------------------------------------------------- build and tools
build_release demo_upstream -- "$UPSTREAM_BIN"
ensure_proxy_bench_tools curl
# Before any measurement, so that a missing matplotlib does not waste a run.
ensure_plot_python

if pgrep -x nginx >/dev/null; then
    say "WARNING: an nginx not started by this script is running; it adds noise"
fi

# wrk, each proxy and the upstream each hold a socket per connection (the
# proxies two: client and upstream).
NOFILE=$((2 * MANY_CONNS + 1024))
raise_nofile "$NOFILE"

# ---------------------------------------------------------------- CPU layout
NCPU=$(nproc)
CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
[[ -n $CPU_MODEL ]] || CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n1)
# As in run.sh: a proxy with 1 worker on CPU 1, the upstream and wrk on CPU 0.
pin_layout "proxy" "upstream + wrk"
declare -A SET_WORKERS=([w1]=1 [w2]=2) SET_PIN=([w1]="${SUT_PIN[*]}") SET_PINNING=([w1]="$PINNING")
LOAD_PIN_BASE=("${LOAD_PIN[@]}")

# ---------------------------------------------------------------- setup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-matrix.XXXXXX")
# nginx workers drop to an unprivileged user when the master runs as root;
# they must be able to reach the temp dirs inside.
chmod 755 "$TMP"
mkdir -p "$OUT_DIR"
rm -f "$OUT_JSON" "$OUT_MD" "$OUT_PNG"
read -r P_UP < <(free_ports 1)

# NGINX: the config of run.sh, plus what the scenarios need. Request bodies
# up to MAX_BODY; the listen backlog of the gateway (server.backlog, 2048)
# rather than NGINX's 511, for the 1,024 connections that open at once;
# enough worker_connections for a client and an upstream socket per
# connection. Unless BENCH_MATRIX_NGINX_BUFFERING=1, NGINX streams bodies as
# the gateway does, through its memory buffers, instead of spooling request
# bodies (over client_body_buffer_size, 16 KiB) and responses (beyond its
# proxy_buffers, 8 x 4 KiB) to temp files on disk.
NGINX_WORKER_CONNECTIONS=$((2 * MANY_CONNS + 256 > 4096 ? 2 * MANY_CONNS + 256 : 4096))
NGINX_LISTEN_OPTS="backlog=2048"
NGINX_EXTRA_HTTP="    client_max_body_size $MAX_BODY;"
if [[ $NGINX_BUFFERING != 1 ]]; then
    NGINX_EXTRA_HTTP+="
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;"
fi

# The upload: a wrk script that posts the same body on every request.
head -c "$UPLOAD_BYTES" /dev/zero | tr '\0' 'x' >"$TMP/upload.bin"
cat >"$TMP/upload.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", $UPLOAD_BYTES)
EOF

say "work dir $TMP; upstream port $P_UP"
start_upstream
# An older demo_upstream answers every path with /echo's JSON.
if [[ -n ${WANT[sizes]:-}${WANT[uploads]:-} ]]; then
    got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$P_UP/bytes/10") || true
    [[ $got == "200 10" ]] || die "$UPSTREAM_BIN has no GET /bytes/{n} and POST /sink (GET /bytes/10:" \
        "'$got'): rebuild it (cargo build --release --example demo_upstream)"
fi

declare -A BASE=() ALOG=()
# start_set TAG: a fresh gateway and NGINX with SET_WORKERS[TAG] workers each,
# on SET_PIN[TAG], on new ports, with configs in $TMP/TAG.
start_set() {
    local tag=$1 dir=$TMP/$1 workers=${SET_WORKERS[$1]} pg pa pn pin=()
    read -r -a pin <<<"${SET_PIN[$tag]:-}"
    rm -rf "$dir"
    mkdir -p "$dir/nginx"
    chmod 755 "$dir"
    read -r pg pa pn < <(free_ports 3)
    write_gateway_conf "$dir/gateway.yaml" "$pg" "$pa" "$workers" "  max_body_bytes: $MAX_BODY"
    "$GATEWAY_BIN" check --config "$dir/gateway.yaml" >/dev/null 2>"$dir/check.out" ||
        die "gateway rejected $dir/gateway.yaml: $(cat "$dir/check.out")"
    TMP=$dir WORKERS=$workers P_NGINX=$pn write_nginx_conf on
    nginx_args "$dir"
    start "gateway-$tag" "$dir/gateway-access.log" "${pin[@]}" "$GATEWAY_BIN" --config "$dir/gateway.yaml"
    wait_ready "gateway-$tag" "http://127.0.0.1:$pa/health/ready"
    start "nginx-$tag" "$dir/nginx.out" "${pin[@]}" "$NGINX" "${NGINX_ARGS[@]}"
    wait_ready "nginx-$tag" "http://127.0.0.1:$pn/demo/hello"
    BASE[gateway-$tag]="http://127.0.0.1:$pg"
    BASE[nginx-$tag]="http://127.0.0.1:$pn"
    ALOG[gateway-$tag]=$dir/gateway-access.log
    ALOG[nginx-$tag]=$dir/nginx-access.log
}

stop_set() { # TAG
    stop_started "gateway-$1"
    stop_started "nginx-$1"
}

# ---------------------------------------------------------------- scenarios
# A row is one line of the table: a request shape against one set of
# proxies. A group is what runs together: its sets are started fresh (so
# that the peak RSS is the group's own), its rows alternate within each round.
declare -A R_LABEL=() R_SCEN=() R_SET=() R_PATH=() R_CONNS=() R_THREADS=() R_SCRIPT=() R_CHECK=()
GROUPS_=()
declare -A GROUP_ROWS=()
add_row() { # GROUP ROW SCENARIO LABEL SET PATH CONNS THREADS SCRIPT CHECK
    [[ -n ${GROUP_ROWS[$1]:-} ]] || GROUPS_+=("$1")
    GROUP_ROWS[$1]+="$2 "
    R_SCEN[$2]=$3 R_LABEL[$2]=$4 R_SET[$2]=$5 R_PATH[$2]=$6
    R_CONNS[$2]=$7 R_THREADS[$2]=$8 R_SCRIPT[$2]=$9 R_CHECK[$2]=${10}
}

human_bytes() { # N -> 100 B, 16 KiB, 1 MiB, 1.5 KiB
    awk -v n="$1" 'BEGIN {
        if (n >= 1048576) { v = n / 1048576; u = "MiB" } else if (n >= 1024) { v = n / 1024; u = "KiB" } else { v = n; u = "B" }
        s = sprintf("%.1f", v); sub(/\.0$/, "", s); printf "%s %s\n", s, u }'
}

if [[ -n ${WANT[sizes]:-} ]]; then
    for n in "${SIZE_LIST[@]}"; do
        h=$(human_bytes "$n")
        add_row "size-${h// /}" "size-${h// /}" sizes "response $h" w1 "/demo/bytes/$n" "$CONNS" "$THREADS" "" \
            "bytes:$n"
    done
fi
if [[ -n ${WANT[uploads]:-} ]]; then
    add_row upload upload uploads "upload $(human_bytes "$UPLOAD_BYTES")" w1 /demo/sink "$CONNS" "$THREADS" \
        "$TMP/upload.lua" sink
fi
if [[ -n ${WANT[conns]:-} ]]; then
    add_row conns conns conns "$MANY_CONNS connections" w1 /demo/hello "$MANY_CONNS" "$THREADS" "" hello
fi
WORKERS_NOTE=""
LOAD_NOTE=""
if [[ -n ${WANT[workers]:-} ]]; then
    # 2 workers on CPUs 1-2 when there are at least 3 CPUs; the load side
    # then gets CPU 0 and every CPU above 2 (wrk with a thread per load CPU,
    # an upstream with a worker per load CPU), for both worker counts, so
    # that it can feed 2 proxy workers.
    WORKERS=2
    pin_layout "proxy" "upstream + wrk"
    WORKERS=1
    SET_PIN[w2]="${SUT_PIN[*]}" SET_PINNING[w2]=$PINNING
    # pin_layout also reset the load side's pinning: the other rows keep CPU 0.
    LOAD_PIN=("${LOAD_PIN_BASE[@]}")
    if ((NCPU < 4)); then
        WORKERS_NOTE="Only $NCPU CPUs: wrk and the upstream share the cores with the 2 proxy workers, so the 2-worker figures and the scaling factor are NOT meaningful (they need at least 4 CPUs)."
    fi
    add_row workers workers-1 workers "1 worker" w1 /demo/hello "$CONNS" "$THREADS" "" hello
    add_row workers workers-2 workers "2 workers" w2 /demo/hello "$CONNS" "$THREADS" "" hello
fi

# Every row's load and how it was pinned, for the report.
ROWS_TSV=$TMP/rows.tsv
RESULTS=$TMP/results.tsv
RSS_TSV=$TMP/rss.tsv
: >"$RESULTS"
: >"$RSS_TSV"
: >"$ROWS_TSV"

# check_row ROW KEY: the proxy KEY (gateway-w1...) answers the row's request
# with 2xx and the right body, or we would be timing an error page.
check_row() {
    local row=$1 key=$2 url got
    url=${BASE[$key]}${R_PATH[$row]}
    case ${R_CHECK[$row]} in
        hello)
            got=$(http_get "$url") || die "$key: GET $url failed"
            [[ $got == "$UP_BODY" ]] || die "$key: GET $url: body differs from the upstream's: '$got'"
            ;;
        bytes:*)
            got=$(curl -fsS --max-time 10 -o /dev/null -w '%{size_download}' "$url") || die "$key: GET $url failed"
            [[ $got == "${R_CHECK[$row]#bytes:}" ]] || die "$key: GET $url: $got bytes, want ${R_CHECK[$row]#bytes:}"
            ;;
        sink)
            got=$(curl -fsS --max-time 10 -H 'Expect:' -H 'Content-Type: application/octet-stream' \
                --data-binary @"$TMP/upload.bin" "$url") || die "$key: POST $url failed"
            [[ $got == "$UPLOAD_BYTES" ]] || die "$key: POST $url: the upstream got '$got' bytes, want $UPLOAD_BYTES"
            ;;
    esac
}

# measure ROW PROXY DURATION OUT: wrk with the row's load against PROXY
# (gateway or nginx) of the row's set; sets MEASURED (see wrk_measure).
measure() {
    local row=$1 key=$2-${R_SET[$1]} args
    args=(-t"${R_THREADS[$row]}" -c"${R_CONNS[$row]}" -d"$3" --latency)
    [[ -z ${R_SCRIPT[$row]} ]] || args+=(-s "${R_SCRIPT[$row]}")
    wrk_measure "${PID[$key]}" "${ALOG[$key]}" "$4" $(($(dur_secs "$3") + 60)) \
        "${args[@]}" "${BASE[$key]}${R_PATH[$row]}"
}

PROXIES=(gateway nginx)
run_group() { # GROUP
    local group=$1 rows=() sets=() row set p r rps p50 p99 reqs sock non2xx cpu rpc lines
    read -r -a rows <<<"${GROUP_ROWS[$group]}"
    for row in "${rows[@]}"; do
        [[ " ${sets[*]} " == *" ${R_SET[$row]} "* ]] || sets+=("${R_SET[$row]}")
    done
    for set in "${sets[@]}"; do start_set "$set"; done
    for row in "${rows[@]}"; do
        for p in "${PROXIES[@]}"; do check_row "$row" "$p-${R_SET[$row]}"; done
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$group" "${R_SCEN[$row]}" \
            "${R_LABEL[$row]}" "${R_PATH[$row]}" "$([[ -n ${R_SCRIPT[$row]} ]] && echo POST || echo GET)" \
            "${R_CONNS[$row]}" "${R_THREADS[$row]}" "${SET_WORKERS[${R_SET[$row]}]}" \
            "${SET_PINNING[${R_SET[$row]}]}${LOAD_NOTE:+; $LOAD_NOTE}" >>"$ROWS_TSV"
        for p in "${PROXIES[@]}"; do
            measure "$row" "$p" "$WARMUP" "$TMP/wrk-warmup-$row-$p.txt"
            read -r _ _ _ _ sock non2xx _ <<<"$MEASURED"
            ((sock + non2xx == 0)) || say "warm-up $row $p: $sock socket errors, $non2xx non-2xx"
        done
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        for row in "${rows[@]}"; do
            for p in "${PROXIES[@]}"; do
                measure "$row" "$p" "$DURATION" "$TMP/wrk-$r-$row-$p.txt"
                read -r rps p50 p99 reqs sock non2xx cpu rpc lines <<<"$MEASURED"
                printf '%-10s %-5s %-8s %11s %9s %9s %10s %6s %9s %10s %7s\n' "$row" "$r" "$p" \
                    "$rps" "$p50" "$p99" "$reqs" "$cpu" "$rpc" "$lines" $((sock + non2xx))
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$r" "$p" \
                    "$rps" "$p50" "$p99" "$reqs" "$sock" "$non2xx" "$cpu" "$rpc" "$lines" >>"$RESULTS"
            done
        done
    done
    # Peak RSS over the group (warm-up included) of each proxy of each row.
    for row in "${rows[@]}"; do
        for p in "${PROXIES[@]}"; do
            printf '%s\t%s\t%s\n' "$row" "$p" "$(peak_rss_kb "${PID[$p-${R_SET[$row]}]}")" >>"$RSS_TSV"
        done
    done
    for set in "${sets[@]}"; do stop_set "$set"; done
}

NROWS=0
for g in "${GROUPS_[@]}"; do
    read -r -a rows <<<"${GROUP_ROWS[$g]}"
    NROWS=$((NROWS + ${#rows[@]}))
done
say "scenarios: ${!WANT[*]}; $NROWS rows, each: warm-up $WARMUP, then $ROUNDS rounds of $DURATION," \
    "alternating gateway and nginx (1 worker each unless the row says otherwise)"
say "pinning: ${SET_PINNING[w1]}"
say "expect about $((NROWS * 2 * (WARM_S + ROUNDS * DUR_S + 1) + ${#GROUPS_[@]} * 3))s"
[[ -z $WORKERS_NOTE ]] || say "NOTE: $WORKERS_NOTE"

printf '\n%-10s %-5s %-8s %11s %9s %9s %10s %6s %9s %10s %7s\n' \
    row round proxy 'req/s' 'p50_ms' 'p99_ms' requests 'cpu%' 'req/cpu_s' 'log_lines' errors
for g in "${GROUPS_[@]}"; do
    if [[ $g == workers ]] && ((NCPU >= 4)) && [[ -n ${SET_PIN[w2]} ]]; then
        # Last group: the load side gets CPU 0 and CPUs 3.., and keeps them.
        LOAD_CPUS="0,3-$((NCPU - 1))"
        LOAD_PIN=(taskset -c "$LOAD_CPUS")
        THREADS_W=$((NCPU - 2 < 4 ? NCPU - 2 : 4))
        for row in workers-1 workers-2; do R_THREADS[$row]=$THREADS_W; done
        stop_started upstream
        UP_WORKERS=$((NCPU - 2)) start_upstream
        LOAD_NOTE="for this scenario the upstream ($((NCPU - 2)) workers) and wrk (-t$THREADS_W) run on CPUs $LOAD_CPUS"
        say "workers: $LOAD_NOTE"
    fi
    run_group "$g"
done
LOAD_PIN=("${LOAD_PIN_BASE[@]}")

# ---------------------------------------------------------------- report
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo none)
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || GIT_REV+=" (with uncommitted changes)"
python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    command "$CMD" date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" nproc "$NCPU" cpu_model "$CPU_MODEL" \
    kernel "$(uname -r)" git_rev "$GIT_REV" nginx "$NGINX_VERSION" wrk "$WRK_VERSION" \
    rounds "$ROUNDS" duration "$DURATION" warmup "$WARMUP" connections "$CONNS" \
    wrk_threads "$THREADS" upstream_workers "$UP_WORKERS" gateway_bin "$GATEWAY_BIN" \
    upstream_bin "$UPSTREAM_BIN" max_body_bytes "$MAX_BODY" nofile "$(ulimit -Sn)" \
    nginx_buffering "$([[ $NGINX_BUFFERING == 1 ]] && echo "default (spools to temp files)" || echo "proxy_request_buffering off; proxy_max_temp_file_size 0")" \
    workers_note "$WORKERS_NOTE" >"$TMP/meta.json"

"$PLOT_PY" bench/matrix.py report --rows "$ROWS_TSV" --results "$RESULTS" --rss "$RSS_TSV" \
    --meta "$TMP/meta.json" --json "$OUT_JSON" --md "$OUT_MD" --png "$OUT_PNG" ||
    die "bench/matrix.py report failed"
say "wrote ${OUT_JSON#"$ROOT"/}, ${OUT_MD#"$ROOT"/} and ${OUT_PNG#"$ROOT"/}"

# Failed requests make a row's figures worthless, except in the connections
# scenario, where counting them is the point.
bad=$(awk -F '\t' '$1 != "conns" && $8 + $9 > 0 { print $1 "/" $3 }' "$RESULTS" | sort -u | tr '\n' ' ')
[[ -z $bad ]] || die "failed requests (socket errors or non-2xx) in: $bad; those rows are not valid"
