#!/usr/bin/env bash
# Installs twcore and every plugin package in this repository into the current Python
# environment (activate a virtualenv first if you want one), torch pinned first so that the
# local CPU wheel 2.13.0 is used where it is present. Idempotent: re-running is quick.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"

packages=(-e ".[test]")
for plugin in plugins/methods/*/ plugins/tasks/*/ plugins/models/*/; do
  [ -f "$plugin/pyproject.toml" ] && packages+=(-e "$plugin")
done
"$PYTHON" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
