#!/usr/bin/env bash
# Installs twcore and every plugin package in this repository into the current Python
# environment (activate a virtualenv first if you want one), torch pinned first so that the
# local CPU wheel 2.13.0 is used where it is present. Idempotent: re-running is quick.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"

packages=(-e ".[test,docs]")
for plugin in plugins/methods/*/ plugins/tasks/*/ plugins/models/*/; do
  [ -f "$plugin/pyproject.toml" ] && packages+=(-e "$plugin")
done
"$PYTHON" -m pip install --quiet --disable-pip-version-check "${packages[@]}"

# Chromium: tests/test_docs_site.py opens the documentation site in it (headless).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null ||
      echo "install.sh: apt-get could not install chromium (needed by tests/test_docs_site.py)" >&2
  else
    echo "install.sh: chromium not found; install it (Debian: apt-get install chromium) for tests/test_docs_site.py" >&2
  fi
fi
