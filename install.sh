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

# Debian packages the tests need; installed with apt-get when running as root.
debian_package() {  # PACKAGE WHO_NEEDS_IT
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq "$1"; } >/dev/null ||
      echo "install.sh: apt-get could not install $1 (needed by $2)" >&2
  else
    echo "install.sh: $1 not found; install it (Debian: apt-get install $1) for $2" >&2
  fi
}

# PostgreSQL: tests/test_tune.py runs a study on a server it starts.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ||
  debian_package postgresql tests/test_tune.py

# Chromium: tests/test_docs_site.py opens the documentation site in it (headless).
command -v chromium >/dev/null 2>&1 || debian_package chromium tests/test_docs_site.py
