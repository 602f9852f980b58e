#!/usr/bin/env bash
# Runs a command with a Python that refuses `pip install`, as Debian 12's and
# Ubuntu 24.04's do (PEP 668, "externally-managed-environment"): `make test`
# runs the check scripts through it, so that none of them can install into
# the system's Python again. Inside a virtual environment pip works as usual
# (its python is called by path, not through this stand-in).
#
#   scripts/with-managed-python.sh COMMAND [ARG...]
set -euo pipefail
(($#)) || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

real=$(command -v python3) || { echo "python3 is required" >&2; exit 1; }
shim=$(mktemp -d "${TMPDIR:-/tmp}/managed-python.XXXXXX")
trap 'rm -rf "$shim"' EXIT

refusal='echo "error: externally-managed-environment (a stand-in for a PEP 668 Python: install into a virtual environment)" >&2; exit 1'
for name in python3 python; do
  cat >"$shim/$name" <<SH
#!/usr/bin/env bash
if [ "\${1:-}" = -m ] && [ "\${2:-}" = pip ] && [ "\${3:-}" = install ]; then $refusal; fi
exec "$real" "\$@"
SH
done
for name in pip pip3; do
  printf '#!/usr/bin/env bash\nif [ "${1:-}" = install ]; then %s; fi\nexec "%s" -m pip "$@"\n' "$refusal" "$real" >"$shim/$name"
done
chmod +x "$shim"/*

PATH="$shim:$PATH" "$@"
