#!/usr/bin/env bash
# Installs twcore and every plugin package in this repository into the current Python
# environment (activate a virtualenv first if you want one), torch pinned first so that the
# local CPU wheel 2.13.0 is used where it is present. Idempotent: a re-run that finds torch
# 2.13.0 and every package installed (editable) from this checkout, with no pyproject.toml
# changed since, skips pip (about a second); otherwise pip installs them all again (1–3 minutes
# on 2 cores, most of it building the editable packages). `bash install.sh --check` only says
# which of the two a re-run would do.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
STAMP=".install.stamp"  # the pyproject.toml files and interpreter of the last full install

packages=(-e ".[test,docs]")
for plugin in plugins/methods/*/ plugins/tasks/*/ plugins/models/*/; do
  [ -f "$plugin/pyproject.toml" ] && packages+=(-e "$plugin")
done

# Prints this checkout's install stamp; exits 1 if something is missing or installed from
# elsewhere (then the stamp is not to be trusted).
install_stamp() {
  "$PYTHON" -P - "${packages[@]}" <<'PY'
import hashlib, importlib.metadata as md, json, pathlib, sys, tomllib

folders = [pathlib.Path(a.split("[")[0]).resolve() for a in sys.argv[1:] if a != "-e"]
digest = hashlib.sha256(f"{sys.executable}\n{sys.prefix}\n".encode())
try:
    healthy = md.version("torch").startswith("2.13.0")
except md.PackageNotFoundError:
    healthy = False
for folder in folders:
    pyproject = folder / "pyproject.toml"
    digest.update(str(pyproject).encode() + pyproject.read_bytes())
    name = tomllib.loads(pyproject.read_text())["project"]["name"]
    urls = {json.loads(d.read_text("direct_url.json") or "{}").get("url")
            for d in md.distributions(name=name)}
    healthy = healthy and folder.as_uri() in urls
print(digest.hexdigest())
sys.exit(0 if healthy else 1)
PY
}

up_to_date() { stamp="$(install_stamp)" && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp" ]; }

if [ "${1:-}" = "--check" ]; then  # say whether a re-run would skip pip; change nothing
  if up_to_date; then echo "install.sh: up to date (a re-run skips pip)"; exit 0; fi
  echo "install.sh: not installed from here, or a pyproject.toml changed (a re-run installs)"
  exit 1
fi

if up_to_date; then
  echo "install.sh: torch and every package here are installed and unchanged; pip skipped" >&2
else
  rm -f "$STAMP"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
  if stamp="$(install_stamp)"; then echo "$stamp" > "$STAMP"; fi  # no stamp: next run installs
fi

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
