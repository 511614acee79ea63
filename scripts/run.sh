#!/usr/bin/env bash
# Set up SanKe and run it on the embedded defaults (SQLite, in-process bus) with demo data,
# serving on http://127.0.0.1:8000 (SANKE_HOST / SANKE_PORT to change). Loopback only: the
# server, and so its audio and video, can be reached from this machine alone.
# Every start prints the demo accounts. SANKE_NO_INSTALL=1 starts without the install step
# (.venv already set up by an earlier run).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SANKE_NO_INSTALL:-0}" != "1" ] || [ ! -x .venv/bin/sanke ]; then
  bash scripts/bootstrap.sh
fi
export SANKE_DATA_DIR=${SANKE_DATA_DIR:-data}
exec .venv/bin/sanke serve --demo "$@"
