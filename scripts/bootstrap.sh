#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh on a fresh Debian machine with Python 3.11:
# installs the Debian packages given as arguments (when missing), creates .venv and installs SanKe.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || { echo "SanKe needs Python >= 3.11" >&2; exit 1; }

missing=()
for pkg in "$@"; do
  case "$pkg" in
    postgresql) compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql postgresql-contrib) ;;
    *) dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done
# the media fast path (media/fastpath.c) is compiled at install: a C compiler and Python's headers
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || missing+=(python3-dev)
if [ ! -x .venv/bin/python ] && ! "$PY" -m ensurepip --version >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> pip install -e .${SANKE_EXTRAS:-}"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".${SANKE_EXTRAS:-}" 2>&1 | grep -v -E "^(WARNING: Location|DEPRECATION)" || true
.venv/bin/python -c "import server, scheduler, fastapi, sqlalchemy, aiortc, av, media._fastpath" \
  || { echo "SanKe did not install correctly" >&2; exit 1; }
