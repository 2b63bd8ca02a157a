#!/usr/bin/env bash
# Create ./.venv if needed and install fip (the distribution fip-photo, editable) with every extra and the test tools,
# at the versions tested in CI (constraints.txt). Safe to run again: it reinstalls only when pyproject.toml or
# constraints.txt changed.
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
  # A distribution named `fip` is either this project's install from before it was renamed fip-photo or the
  # unrelated radio client of that name; both provide the module `fip` (and the `fip` command), so it goes first,
  # with the metadata the old install left in the checkout (Python run from here would still find its entry points).
  rm -rf fip.egg-info
  if .venv/bin/python -m pip show -qq fip 2>/dev/null; then
    .venv/bin/python -m pip uninstall -qq -y fip
  fi
  # -qq keeps pip to errors only; PIP_CONSTRAINT also pins what build environments fetch.
  PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install -qq -e ".[all,test]"
  echo "$wanted" >"$stamp"
fi

# fip's CPU kernels: compiled here, once (numba caches the machine code), rather than on the first photo.
.venv/bin/python -c "from fip.runtime import kernels; kernels.warm()"
