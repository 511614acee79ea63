#!/usr/bin/env bash
# Set up SanKe and run it on the embedded defaults (SQLite, in-process bus) with demo data,
# serving on http://127.0.0.1:8000 (SANKE_HOST / SANKE_PORT to change).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export SANKE_DATA_DIR=${SANKE_DATA_DIR:-data}
exec .venv/bin/sanke serve --demo "$@"
