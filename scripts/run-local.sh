#!/usr/bin/env bash
# `make run-local`: the demo upstream (examples/demo_upstream.rs), then the
# gateway in front of it with settings/local.yaml, in the foreground.
# Ctrl-C stops both. Stops at once, saying why, when the demo upstream or
# the gateway cannot listen (a port already taken, most often).
#
#   DEMO_LISTEN     the demo upstream's address (default 127.0.0.1:8081);
#                   the gateway is pointed at it
#   LOCAL_SETTINGS  the gateway's settings file (default settings/local.yaml)
#   BIN_DIR         where the binaries are (default target/debug)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO_LISTEN=${DEMO_LISTEN:-127.0.0.1:8081}
LOCAL_SETTINGS=${LOCAL_SETTINGS:-settings/local.yaml}
BIN_DIR=${BIN_DIR:-target/debug}
DEMO_BIN=$BIN_DIR/examples/demo_upstream
GATEWAY_BIN=$BIN_DIR/gateway

say() { printf 'run-local: %s\n' "$*" >&2; }

for bin in "$DEMO_BIN" "$GATEWAY_BIN"; do
  [ -x "$bin" ] || { say "no $bin: build it first (make run-local does)"; exit 1; }
done

demo_out=$(mktemp "${TMPDIR:-/tmp}/run-local-demo.XXXXXX")
"$DEMO_BIN" --listen "$DEMO_LISTEN" >"$demo_out" 2>&1 &
demo=$!
cleanup() {
  kill "$demo" 2>/dev/null
  wait "$demo" 2>/dev/null
  rm -f "$demo_out"
}
trap cleanup EXIT

# The demo prints "listening" only once it has bound its port.
for _ in $(seq 100); do
  grep -q "listening" "$demo_out" && break
  if ! kill -0 "$demo" 2>/dev/null; then
    cat "$demo_out" >&2
    say "the demo upstream could not start on $DEMO_LISTEN; free that port, or choose another: make run-local DEMO_LISTEN=127.0.0.1:18081"
    exit 1
  fi
  sleep 0.1
done
grep -q "listening" "$demo_out" || { say "the demo upstream did not start within 10 s"; exit 1; }
cat "$demo_out"

say "gateway with $LOCAL_SETTINGS in front of http://$DEMO_LISTEN; Ctrl-C stops both"
say "try: curl -s localhost:8080/demo/hello; curl -s localhost:9090/metrics | grep gateway_requests_total"
# Ctrl-C reaches the gateway too: it drains and exits 0, and so does this
# script (which must not die before the gateway has finished).
trap 'true' INT TERM
"$GATEWAY_BIN" --config "$LOCAL_SETTINGS" \
  --set "upstreams.demo.targets=[\"http://$DEMO_LISTEN\"]"
status=$?
if [ "$status" -ne 0 ]; then
  say "the gateway stopped with status $status (its message is above); a port in use? change server.listen or admin.listen in $LOCAL_SETTINGS, or set GATEWAY_SERVER__LISTEN / GATEWAY_ADMIN__LISTEN"
fi
exit "$status"
