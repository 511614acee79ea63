#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh on a fresh Debian machine with Python 3.11:
# installs the Debian packages given as arguments (when missing), creates .venv and installs SanKe.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Another apt (unattended-upgrades, a second bootstrap) may hold apt's or dpkg's lock: wait for it, up to
# SANKE_APT_LOCK_TIMEOUT seconds, instead of failing at once (apt-get gives up after a few seconds, exit 100).
APT_LOCK_TIMEOUT=${SANKE_APT_LOCK_TIMEOUT:-900}
APT_LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
apt_locked() {  # is one of apt's locks held? (asks with F_GETLK, never takes a lock itself)
  as_root python3 - "${APT_LOCKS[@]}" <<'PY'
import fcntl, os, struct, sys
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        continue
    try:
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        if struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, probe))[0] != fcntl.F_UNLCK:
            sys.exit(0)
    finally:
        os.close(fd)
sys.exit(1)
PY
}
apt_wait() {
  local deadline=$((SECONDS + APT_LOCK_TIMEOUT)) told=0
  while apt_locked; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "another apt still holds its lock after ${APT_LOCK_TIMEOUT} s" >&2; return 1
    fi
    [ "$told" -eq 1 ] || { echo "==> waiting for another apt to finish (its lock is held)"; told=1; }
    sleep 2
  done
}
apt_get() {  # the lock can be taken again between apt_wait and apt-get: apt-get waits for dpkg's itself
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" "$@"
}
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    apt_wait
    apt_get update -qq || { apt_wait && apt_get update -qq; }  # lost the lists lock to a racing apt: once more
    apt_updated=1
  fi
  apt_wait
  apt_get install -y -qq --no-install-recommends "$@" >/dev/null
}

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || { echo "SanKe needs Python >= 3.11" >&2; exit 1; }

missing=()
for pkg in "$@"; do
  case "$pkg" in
    faketime) command -v faketime >/dev/null 2>&1 || missing+=(faketime) ;;
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
