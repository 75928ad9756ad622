#!/usr/bin/env bash
# jaxpose set-up and entry point.
#   ./run.sh demo [ARGS]   run the main job on the embedded default body (see README)
#   ./run.sh test [ARGS]   run the test suite
# Creates and uses ./.venv unless a virtual environment is already active.
set -euo pipefail
cd "$(dirname "$0")"

ensure_env() {
  if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
      echo "[run.sh] creating virtual environment .venv" >&2
      python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
  fi
  local stamp=".venv-installed.stamp"
  [ -n "${VIRTUAL_ENV:-}" ] && stamp="$VIRTUAL_ENV/.jaxpose-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[run.sh] installing jaxpose and its dependencies" >&2
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e ".[dev]"
    touch "$stamp"
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    ensure_env
    exec python -m jaxpose.cli demo "$@"
    ;;
  test)
    ensure_env
    exec python -m pytest -n 2 --durations=25 "$@"
    ;;
  *)
    echo "usage: ./run.sh {demo|test} [ARGS]" >&2
    exit 2
    ;;
esac
