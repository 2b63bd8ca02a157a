#!/usr/bin/env bash
# Create ./.venv if needed and install fip (editable) with the versions tested in CI (constraints.txt).
# Safe to run again: it reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi

stamp=.venv/.fip-installed
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing fip and its dependencies into .venv (the first time takes a few minutes)"
  # -qq keeps pip to errors only; PIP_CONSTRAINT also pins what build environments fetch.
  PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install -qq -e ".[test]"
  echo "$wanted" >"$stamp"
fi
