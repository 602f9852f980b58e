#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target of fuzz/ (libFuzzer) for
# FUZZ_SECONDS each, one after the other, then prints executions per target
# and whether it crashed. Installs cargo-fuzz (crates.io) when missing.
#
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_TARGETS  targets to run (default: every target, `cargo fuzz list`)
#   FUZZ_ARGS     extra libFuzzer arguments (e.g. "-max_len=512")
#
# With a nightly toolchain (rustup) the targets run under AddressSanitizer;
# without one, on stable with `--sanitizer none`. New corpus entries go to
# fuzz/corpus/<target>/ (git ignores all but the seed-* files); a crash's
# input goes to fuzz/artifacts/<target>/, and its log to
# fuzz/target/logs/<target>.log. Reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...
# Exits 1 when any target crashed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_ARGS=${FUZZ_ARGS:-}

say() { printf 'fuzz: %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz is not installed: cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked || { say "could not install cargo-fuzz"; exit 1; }
fi

if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
  cargo=(cargo +nightly fuzz)
  opts=()
  say "nightly toolchain: AddressSanitizer on"
else
  cargo=(cargo fuzz)
  opts=(--sanitizer none)
  say "no nightly toolchain: stable, --sanitizer none"
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cd fuzz && "${cargo[@]}" list)
fi
[ "${#targets[@]}" -gt 0 ] || { say "no fuzz targets"; exit 1; }

# One build for every target first, so that each target's seconds are spent
# fuzzing (`run` below finds the build done).
say "building ${targets[*]}"
(cd fuzz && "${cargo[@]}" build "${opts[@]}") || { say "build failed"; exit 1; }

mkdir -p fuzz/target/logs
declare -A result runs speed
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/target/logs/$t.log"
  say "$t: ${FUZZ_SECONDS}s (log $log)"
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of arguments
  (cd fuzz && "${cargo[@]}" run "${opts[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10 $FUZZ_ARGS) >"$log" 2>&1
  rc=$?
  runs[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed[$t]=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    result[$t]=ok
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    result[$t]="CRASH (exit $rc) ${artifact}"
    grep -m 5 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" >&2
  fi
done

printf '\n%-14s %12s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
  printf '%-14s %12s %10s  %s\n' "$t" "${runs[$t]:-?}" "${speed[$t]:-?}" "${result[$t]}"
done
exit "$failed"
