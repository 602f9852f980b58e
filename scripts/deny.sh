#!/usr/bin/env bash
# cargo-deny for `make lint` (rules: deny.toml).
#
#   scripts/deny.sh              licenses, bans, sources; then advisories if possible
#
# cargo-deny is used from PATH when it is the pinned version, else from
# .tools/bin, installed there on first use (`cargo install --locked --root
# .tools`, from crates.io; about 310 s of CPU, once per machine; never into
# the system).
#
# Advisories need the RustSec advisory database, a git repository that
# cargo-deny fetches into $CARGO_HOME/advisory-dbs. Machines that cannot
# reach it (CI here has crates.io only) would fail on every run, so:
#   - the database is already there: `check advisories` against it, offline
#     (`--offline`; it can be old: `cargo deny fetch db` refreshes it where
#     it is reachable);
#   - else one fetch is tried (bounded by DENY_FETCH_TIMEOUT, 60 s): if it
#     works, `check advisories`;
#   - else advisories are skipped with a line saying so. DENY_ADVISORIES=require
#     makes that a failure (for a pipeline that does reach the database),
#     DENY_ADVISORIES=skip skips them without trying.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${CARGO_DENY_VERSION:-0.20.2}"
ROOT=".tools"
ADVISORIES="${DENY_ADVISORIES:-auto}"
FETCH_TIMEOUT="${DENY_FETCH_TIMEOUT:-60}"

say() { echo "deny: $*"; }

installed_version() {
  # `cargo-deny --version` prints "cargo-deny 0.20.2".
  "$1" --version 2>/dev/null | awk '{print $2}'
}

deny_bin=""
if command -v cargo-deny >/dev/null 2>&1 && [ "$(installed_version cargo-deny)" = "$VERSION" ]; then
  deny_bin="$(command -v cargo-deny)"
elif [ -x "$ROOT/bin/cargo-deny" ] && [ "$(installed_version "$ROOT/bin/cargo-deny")" = "$VERSION" ]; then
  deny_bin="$ROOT/bin/cargo-deny"
else
  say "installing cargo-deny $VERSION into $ROOT/bin (cargo install --locked; compiles for several minutes, once)"
  started=$(date +%s)
  cargo install --locked --quiet --root "$ROOT" --version "$VERSION" cargo-deny
  say "installed in $(( $(date +%s) - started )) s"
  deny_bin="$ROOT/bin/cargo-deny"
fi

deny() { "$deny_bin" deny "$@"; }

say "cargo deny check licenses bans sources"
# Duplicate versions are warnings (deny.toml); their inclusion graphs are
# left out here: `cargo deny check bans` shows them.
deny --locked check --hide-inclusion-graph licenses bans sources

db_dir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
case "$ADVISORIES" in
  skip)
    say "advisories: skipped (DENY_ADVISORIES=skip)"
    ;;
  auto | require)
    # A clone of the database has a crates/ folder (a failed fetch leaves
    # only a lock file behind).
    if compgen -G "$db_dir/*/crates" >/dev/null; then
      say "cargo deny check advisories (database in $db_dir, not refreshed)"
      deny --locked --offline check advisories
    elif timeout "$FETCH_TIMEOUT" "$deny_bin" deny fetch db >/dev/null 2>&1; then
      say "cargo deny check advisories (database fetched)"
      deny --locked --offline check advisories
    elif [ "$ADVISORIES" = require ]; then
      say "advisories: the advisory database is not in $db_dir and could not be fetched" >&2
      exit 1
    else
      say "advisories: SKIPPED: the advisory database is not in $db_dir and could not be fetched" \
        "within ${FETCH_TIMEOUT} s (no network to it?). Known vulnerabilities were not checked."
    fi
    ;;
  *)
    say "DENY_ADVISORIES must be auto, require or skip (got $ADVISORIES)" >&2
    exit 2
    ;;
esac
