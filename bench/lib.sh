# Shared by the bench scripts (run.sh, ratelimit.sh, auth.sh, matrix.sh, ...):
# process bookkeeping and cleanup, readiness checks, wrk output parsing, free
# ports, apt installs.
# Source it right after `set -Eeuo pipefail`; it installs the EXIT/INT/TERM/ERR
# traps at once so that an early `die` still cleans up.
# shellcheck shell=bash

say() { printf '[bench] %s\n' "$*"; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes
# Background jobs of a non-interactive shell ignore SIGINT, so on Ctrl-C
# nothing dies unless we kill it here.
TMP=""
WRK_PID=""
PIDS=()
declare -A PID=()
# Files (relative to $TMP, globs allowed) whose last lines are shown when the
# script fails, besides every $TMP/*.err. A script may also define
# bench_on_failure to show more (its output goes to stderr).
FAIL_LOGS=()

stop_pid() {
    local pid=$1 kids i p
    kill -0 "$pid" 2>/dev/null || return 0
    # nginx workers are children of the master; collect them before the
    # master exits and they get reparented out of reach.
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    # shellcheck disable=SC2086
    kill -TERM "$pid" $kids 2>/dev/null || true
    # actix drains gracefully for up to 30 s by default; we don't wait that long.
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for p in $pid $kids; do
        ! kill -0 "$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    local i
    [[ -z $WRK_PID ]] || stop_pid "$WRK_PID"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    if [[ -n $TMP && -d $TMP ]]; then
        if ((rc != 0)); then
            local f g
            for g in '*.err' "${FAIL_LOGS[@]}"; do
                # $g unquoted: it is a glob.
                for f in "$TMP"/$g; do
                    [[ -s $f ]] || continue
                    printf '[bench] --- last lines of %s ---\n' "${f#"$TMP"/}" >&2
                    tail -n 20 "$f" >&2 || true
                done
            done
            if declare -F bench_on_failure >/dev/null; then
                bench_on_failure >&2 || true
            fi
        fi
        if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
            say "kept work dir $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'printf "[bench] ERROR: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# start NAME STDOUT_FILE CMD...: stderr goes to $TMP/NAME.err. Appending
# (O_APPEND) lets us truncate access logs between rounds while they are open.
start() {
    local name=$1 out=$2
    shift 2
    "$@" >>"$out" 2>"$TMP/$name.err" &
    PIDS+=("$!")
    PID[$name]=$!
}

# ---------------------------------------------------------------- helpers
http_get() { # URL -> body on stdout; fails unless 2xx
    if command -v curl >/dev/null; then
        curl -fsS --max-time 2 "$1"
    else
        python3 -c 'import sys,urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1"
    fi
}

wait_ready() { # NAME URL (READY_TIMEOUT seconds, set by the caller)
    local name=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT))
    while ! http_get "$url" >/dev/null 2>&1; do
        kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited during startup"
        ((SECONDS < deadline)) || die "$name not ready at $url after ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

redis_cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$P_REDIS" "$@" | tr -d '\r'; }

# session_auth_yaml SECRET CACHE_TTL_SECS: the `redis` and `auth` sections of
# the session benches (bench/auth.sh, BENCH_SESSION=1 bench/instructions.sh),
# for Redis on $P_REDIS and the gateway on $P_GW. The provider URLs point at
# the discard port and are never contacted: no issuer and no jwks_url means
# no discovery at startup, and a session whose access token has no known
# expiry (what mint_session writes) is never refreshed.
session_auth_yaml() {
    cat <<EOF
redis: {url: "redis://127.0.0.1:$P_REDIS/0"}
auth:
  provider:
    authorization_url: "http://127.0.0.1:9/authorize"
    token_url: "http://127.0.0.1:9/token"
    client_id: bench
    client_secret: bench-secret
    redirect_url: "http://127.0.0.1:$P_GW/oauth2/callback"
  session: {secret: "$1", cookie_secure: false, cache_ttl_secs: $2}
EOF
}

# start_redis: our own throw-away redis-server on $P_REDIS (no persistence,
# files, if any, in $TMP), on the load CPUs, checked to be the one answering.
start_redis() {
    start redis "$TMP/redis.out" "${LOAD_PIN[@]}" redis-server --port "$P_REDIS" \
        --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" --logfile ""
    local deadline=$((SECONDS + READY_TIMEOUT)) redis_pid
    until [[ $(redis_cli ping 2>/dev/null) == PONG ]]; do
        kill -0 "${PID[redis]}" 2>/dev/null || die "redis-server exited during startup"
        ((SECONDS < deadline)) || die "redis-server not ready on port $P_REDIS after ${READY_TIMEOUT}s"
        sleep 0.2
    done
    # The port must be answered by the Redis we started, never someone else's.
    redis_pid=$(redis_cli info server | sed -n 's/^process_id://p')
    [[ $redis_pid == "${PID[redis]}" ]] ||
        die "port $P_REDIS is answered by redis pid '$redis_pid', not ours (${PID[redis]})"
}

# start_upstream: demo_upstream on $P_UP (load CPUs); sets UP_BODY to the
# body every proxy must return unchanged.
start_upstream() {
    start upstream "$TMP/upstream.out" \
        "${LOAD_PIN[@]}" "$UPSTREAM_BIN" --listen "127.0.0.1:$P_UP" --workers "$UP_WORKERS"
    wait_ready upstream "http://127.0.0.1:$P_UP/hello"
    UP_BODY=$(http_get "http://127.0.0.1:$P_UP/hello")
}

dur_secs() { # wrk duration (10, 10s, 2m, 1h) -> seconds
    [[ $1 =~ ^([0-9]+)([smh]?)$ ]] || die "bad duration '$1' (use e.g. 10s, 2m)"
    case ${BASH_REMATCH[2]} in
        m) echo $((BASH_REMATCH[1] * 60)) ;;
        h) echo $((BASH_REMATCH[1] * 3600)) ;;
        *) echo "${BASH_REMATCH[1]}" ;;
    esac
}

# "user system" CPU time (clock ticks) used so far by PID and its direct
# children (nginx workers). Fields after the ")" of /proc/PID/stat: utime
# is 12th, stime 13th.
user_sys_ticks() {
    local p user=0 sys=0 rest f
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        rest=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${rest##*) }
        read -r -a f <<<"$rest"
        user=$((user + f[11])) sys=$((sys + f[12]))
    done
    echo "$user $sys"
}

# CPU time (clock ticks, user + system) used so far by PID and its children.
cpu_ticks() {
    local user sys
    read -r user sys < <(user_sys_ticks "$1")
    echo $((user + sys))
}

# wrk --latency output -> "rps p50_ms p99_ms requests secs socket_errors non2xx"
parse_wrk() {
    awk '
    function ms(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s")  return n * 1000
        if (u == "m")  return n * 60000
        if (u == "h")  return n * 3600000
        return -1
    }
    /^ +50% /                    { p50 = ms($2) }
    /^ +99% /                    { p99 = ms($2) }
    / requests in /              { reqs = $1; d = $4; sub(/,$/, "", d); secs = ms(d) / 1000 }
    /^Requests\/sec:/            { rps = $2 }
    /^ +Socket errors:/          { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
    /^ +Non-2xx or 3xx responses:/ { non2xx = $NF }
    END {
        if (rps == "" || p50 == "" || p99 == "" || reqs == "") exit 1
        printf "%s %.3f %.3f %d %.2f %d %d\n", rps, p50, p99, reqs, secs, sock + 0, non2xx + 0
    }'
}

# free_ports N -> N free 127.0.0.1 TCP ports on one line. All are held open
# together while choosing, so they are distinct.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
' "$1"
}

# apt_install PKG...: installs with apt-get (root or passwordless sudo). A
# PKG written "a|b" installs the first alternative apt has a candidate for
# (checked after `apt-get update`) and is called b in messages.
apt_install() {
    local pkgs=("$@") names=() i alt
    for i in "${!pkgs[@]}"; do names+=("${pkgs[i]##*|}"); done
    command -v apt-get >/dev/null || die "missing ${names[*]} and no apt-get to install them"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing ${names[*]}; need root or sudo to install"
        sudo=(sudo -n)
    fi
    say "installing ${names[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    for i in "${!pkgs[@]}"; do
        [[ ${pkgs[i]} == *"|"* ]] || continue
        IFS='|' read -r -a alt <<<"${pkgs[i]}"
        pkgs[i]=${alt[-1]}
        local a
        for a in "${alt[@]}"; do
            # Not `| grep -q`: grep quitting early kills apt-cache with SIGPIPE,
            # and under pipefail the test fails even when there is a candidate.
            if [[ $(apt-cache policy "$a" 2>/dev/null) == *"Candidate: "[0-9]* ]]; then
                pkgs[i]=$a
                break
            fi
        done
    done
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# CPU layout shared by every bench: the process under test gets CPUs of its
# own (1..WORKERS), the load side (upstream, wrk, redis) shares CPU 0, when
# taskset exists and there are enough CPUs. Sets SUT_PIN and LOAD_PIN
# (command prefixes, so `cmd &` forks the real process and $! is its pid),
# SUT_CPUS and PINNING (a description that names SUT_LABEL and LOAD_LABEL).
# shellcheck disable=SC2034 # the variables are the function's output
pin_layout() { # SUT_LABEL LOAD_LABEL
    local ncpu
    ncpu=$(nproc)
    SUT_PIN=() LOAD_PIN=() SUT_CPUS=""
    if [[ ${BENCH_PIN:-1} == 1 ]] && command -v taskset >/dev/null && ((ncpu >= WORKERS + 1)); then
        if ((WORKERS == 1)); then SUT_CPUS=1; else SUT_CPUS="1-$WORKERS"; fi
        SUT_PIN=(taskset -c "$SUT_CPUS")
        LOAD_PIN=(taskset -c 0)
        PINNING="$1 on CPU $SUT_CPUS; $2 on CPU 0 (taskset)"
    else
        PINNING="none (needs taskset, nproc >= workers+1, BENCH_PIN!=0; nproc=$ncpu)"
    fi
}

# Builds the gateway and the named examples in release mode (BENCH_NO_BUILD=1
# skips it) and checks that each binary (GATEWAY_BIN and the paths given
# after --) exists.
build_release() { # EXAMPLE... -- BIN...
    local examples=() bins=() args=() e b
    while (($#)) && [[ $1 != -- ]]; do examples+=("$1"); shift; done
    (($#)) && shift
    bins=("$GATEWAY_BIN" "$@")
    say "building gateway and ${examples[*]} (release)"
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        for e in "${examples[@]}"; do args+=(--example "$e"); done
        cargo build --release --bin gateway "${args[@]}"
    fi
    for b in "${bins[@]}"; do
        [[ -x $b ]] || die "no binary at $b"
    done
}

# write_nginx_conf MASTER_PROCESS(on|off): $TMP/nginx.conf, the NGINX that the
# proxy benches compare with, doing the gateway route's work (uses NGINX,
# TMP, WORKERS, P_UP, P_NGINX). bench/instructions.sh runs it without a
# master process, so that callgrind follows the process that serves.
# Optional, empty by default (bench/matrix.sh sets them):
# NGINX_WORKER_CONNECTIONS (4096), NGINX_LISTEN_OPTS (after the listen
# address, e.g. "backlog=2048"), NGINX_EXTRA_HTTP (directives added to the
# http block).
write_nginx_conf() {
    local master=$1 NGINX_BUILD NGINX_TEMP_PATHS m
    # Every temp path nginx was built with must point inside $TMP, or nginx
    # creates it under /var at startup.
    NGINX_BUILD=$("$NGINX" -V 2>&1)
    NGINX_TEMP_PATHS="client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;"
    for m in fastcgi uwsgi scgi; do
        [[ $NGINX_BUILD == *"--without-http_${m}_module"* ]] ||
            NGINX_TEMP_PATHS+="
    ${m}_temp_path $TMP/nginx/$m;"
    done

    # The access log mirrors the gateway's JSON line (src/middleware/access_log.rs):
    # the same fields, written the way the gateway writes them: batched, at
    # most 64 KiB or 50 ms at a time (src/telemetry/logging.rs). NGINX_LOG_BUFFER
    # (default "buffer=64k flush=50ms"; empty: one write per request, nginx's
    # own default and what benches before 2026-12-06 used). nginx cannot
    # compute milliseconds, so the duration is in seconds.
    local log_buffer=${NGINX_LOG_BUFFER-buffer=64k flush=50ms}
    cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process $master;
worker_processes $WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/nginx-error.log warn;

events {
    worker_connections ${NGINX_WORKER_CONNECTIONS:-4096};
}

http {
    $NGINX_TEMP_PATHS
    default_type application/octet-stream;
    server_tokens off;
    tcp_nodelay on;
    # nginx closes a keep-alive connection after 1000 requests by default;
    # actix does not, and the reconnects would be work only nginx pays for.
    keepalive_requests 10000000;
    keepalive_timeout 15s;

    log_format gwjson escape=json
        '{"ts":"\$time_iso8601","level":"INFO","msg":"request",'
        '"request_id":"\$request_id","method":"\$request_method","path":"\$uri",'
        '"status":\$status,"duration_s":\$request_time,"route":"demo",'
        '"upstream":"demo","target":"http://\$upstream_addr",'
        '"client_ip":"\$remote_addr","user":"\$remote_user"}';
    access_log $TMP/nginx-access.log gwjson${log_buffer:+ $log_buffer};
${NGINX_EXTRA_HTTP:-}

    upstream demo {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 10000000;
    }

    server {
        listen 127.0.0.1:$P_NGINX${NGINX_LISTEN_OPTS:+ $NGINX_LISTEN_OPTS};

        # Same as the gateway route: prefix /demo stripped, so /demo/hello
        # reaches the upstream as /hello.
        location /demo/ {
            proxy_pass http://demo/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Host stays nginx's default (the upstream's), as the gateway
            # sends the target's host unless a route sets preserve_host.
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id always;
        }
        location / {
            return 404;
        }
    }
}
EOF
}

# ---------------------------------------------------------------- more helpers
# Used by bench/matrix.sh; the older scripts keep their own copies of some.

# ensure_proxy_bench_tools [COMMAND...]: installs (apt) what an NGINX
# comparison needs and is missing: nginx, wrk, python3 and the COMMANDs
# (package named as the command); then sets NGINX, NGINX_VERSION and
# WRK_VERSION.
ensure_proxy_bench_tools() {
    local pkgs=() cmd
    # nginx-light is the smallest build with the proxy module; newer Debian
    # releases dropped it, so fall back to plain nginx.
    find_nginx >/dev/null || pkgs+=("nginx-light|nginx")
    for cmd in wrk python3 "$@"; do
        command -v "$cmd" >/dev/null || pkgs+=("$cmd")
    done
    ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
    NGINX=$(find_nginx) || die "nginx not found after install"
    for cmd in wrk "$@"; do
        command -v "$cmd" >/dev/null || die "$cmd not found after install"
    done
    NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
    WRK_VERSION=$(wrk -v 2>&1 | head -n1 | awk '{print $2}' || true)
}

find_nginx() { # -> path of nginx (PATH, else /usr/sbin/nginx); fails if none
    command -v nginx 2>/dev/null && return 0
    [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx
}

# nginx_args DIR: sets NGINX_ARGS for the config write_nginx_conf wrote with
# TMP=DIR, and checks it with `nginx -t` (uses NGINX).
nginx_args() {
    local dir=$1
    NGINX_ARGS=(-p "$dir/nginx/" -c "$dir/nginx.conf")
    # -e (1.19.5+) keeps nginx from touching its compiled-in error log before
    # it has read the config.
    if "$NGINX" -h 2>&1 | grep -q -- '-e filename'; then
        NGINX_ARGS+=(-e "$dir/nginx/nginx-error.log")
    fi
    "$NGINX" -t -q "${NGINX_ARGS[@]}" 2>"$dir/nginx-check.err" ||
        die "nginx rejected the generated config $dir/nginx.conf: $(cat "$dir/nginx-check.err")"
}

# write_gateway_conf FILE PORT ADMIN_PORT WORKERS [SERVER_YAML]: the gateway
# config of bench/run.sh (route demo: /demo/* -> upstream $P_UP, prefix
# stripped, JSON access log); SERVER_YAML lines (indented by two spaces) are
# added to its server section.
write_gateway_conf() {
    local file=$1 port=$2 admin=$3 nworkers=$4 extra=${5:-}
    cat >"$file" <<EOC
server:
  listen: "127.0.0.1:$port"
  workers: $nworkers
${extra}
admin:
  listen: "127.0.0.1:$admin"
logging:
  level: "info"
  format: "json"
upstreams:
  demo:
    targets: ["http://127.0.0.1:$P_UP"]
routes:
  - name: "demo"
    path_prefix: "/demo"
    strip_prefix: "/demo"
    upstream: "demo"
EOC
}

# stop_started NAME: stops a process started with `start` and forgets it, so
# that a later `start NAME` can reuse the name.
stop_started() {
    local name=$1 pid i
    pid=${PID[$name]:-}
    [[ -n $pid ]] || return 0
    stop_pid "$pid"
    for i in "${!PIDS[@]}"; do
        [[ ${PIDS[i]} != "$pid" ]] || unset 'PIDS[i]'
    done
    PIDS=("${PIDS[@]}")
    unset "PID[$name]"
}

# peak_rss_kb PID -> the peak resident memory (VmHWM, kB) of PID plus that of
# each of its direct children (nginx workers): since each process started.
peak_rss_kb() {
    local p total=0 kb
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# raise_nofile N: raises this shell's open-file limit (inherited by what it
# starts) to at least N, or dies saying why.
raise_nofile() {
    local want=$1 soft hard
    soft=$(ulimit -Sn)
    if [[ $soft == unlimited ]] || ((soft >= want)); then return 0; fi
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited ]] && ((hard < want)); then
        die "open-file limit: need $want, hard limit is $hard (raise it, e.g. in /etc/security/limits.conf, or lower the connection count)"
    fi
    ulimit -Sn "$want" || die "could not raise the open-file limit to $want (ulimit -n)"
}

# wrk_measure PID ACCESS_LOG OUT TIMEOUT_S WRK_ARG...: runs wrk on the load
# CPUs (LOAD_PIN) against the proxy whose pid is PID, its output in OUT, and
# sets MEASURED to "rps p50_ms p99_ms requests socket_errors non2xx cpu_pct
# req_per_cpu_s log_lines" (cpu of PID and its children, from /proc; the
# access log, if given, is emptied first and its lines counted after).
# shellcheck disable=SC2034 # MEASURED is the function's output
wrk_measure() {
    local pid=$1 log=$2 out=$3 limit=$4 t0 t1 parsed lines=0
    local rps p50 p99 reqs wsecs sock non2xx
    shift 4
    [[ -z $log ]] || : >"$log"
    t0=$(cpu_ticks "$pid")
    # In the background and waited for: a trapped Ctrl-C interrupts `wait` at
    # once, whereas a foreground wrk would swallow it and exit 0.
    "${LOAD_PIN[@]}" timeout --kill-after=5 "$limit" wrk "$@" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk $* failed: $(tail -n 5 "$out")"
    WRK_PID=""
    t1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || die "the proxy (pid $pid) died during wrk $*"
    parsed=$(parse_wrk <"$out") || die "could not parse wrk's output: $(cat "$out")"
    read -r rps p50 p99 reqs wsecs sock non2xx <<<"$parsed"
    if [[ -n $log ]]; then
        # The gateway batches log writes (flushed every 50 ms): let the last
        # batch land before counting lines.
        sleep 0.3
        lines=$(wc -l <"$log")
        : >"$log"
    fi
    MEASURED="$rps $p50 $p99 $reqs $sock $non2xx $(awk -v t=$((t1 - t0)) \
        -v hz="$(getconf CLK_TCK)" -v s="$wsecs" -v r="$reqs" \
        'BEGIN { c = t / hz; printf "%.0f %.0f", (s > 0 ? 100 * c / s : 0), (c > 0 ? r / c : 0) }') $lines"
}

# ensure_plot_python: PLOT_PY, a python with matplotlib, from the project's
# own virtual environment ($GATEWAY_TOOLS_DIR or .tools, then soak-venv, the
# one bench/soak.sh uses), made on first use; never the system's or the
# user's Python. Needs ROOT.
ensure_plot_python() {
    local tools=${GATEWAY_TOOLS_DIR:-$ROOT/.tools}
    local venv=$tools/soak-venv
    PLOT_PY=$venv/bin/python
    "$PLOT_PY" -c 'import matplotlib' 2>/dev/null && return 0
    say "installing matplotlib into ${venv#"$ROOT"/} (a project-local virtual environment)"
    mkdir -p "$tools"
    [[ -x $PLOT_PY ]] || python3 -m venv "$venv" ||
        die "python3 cannot create a virtual environment: install python3-venv (Debian/Ubuntu)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        "$PLOT_PY" -m pip install --quiet 'matplotlib>=3.6,<4' || die "pip could not install matplotlib"
}
