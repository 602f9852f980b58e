# Sourced by scripts/check-k8s.sh and scripts/check-helm.sh (which define
# `say`): the project-local virtual environment with PyYAML and
# kubernetes-validate, created and filled only when missing. Nothing goes
# into the system's or the user's Python (PEP 668). GATEWAY_TOOLS_DIR moves
# it elsewhere.
TOOLS=${GATEWAY_TOOLS_DIR:-$PWD/.tools}
VENV=$TOOLS/venv
PY=$VENV/bin/python
pip_install() { "$PY" -m pip install --quiet "$@"; }

if ! "$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  if [ ! -x "$PY" ]; then
    say "creating a Python virtual environment in $VENV (project-local; nothing goes into the system's Python)"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV" || {
      say "python3 cannot create a virtual environment: install python3-venv (Debian/Ubuntu: apt-get install python3-venv), then run again"
      exit 1
    }
  fi
  say "installing PyYAML and kubernetes-validate into $VENV (pip)"
  pip_install PyYAML kubernetes-validate
fi
