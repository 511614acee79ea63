#!/usr/bin/env bash
# Set up everything the tests need (Debian: PostgreSQL, redis-server, chromium; Python: SanKe + test
# extras, incl. the playwright package that drives /usr/bin/chromium — never `playwright install`;
# a CJK font so the pages' screenshots show their Chinese text)
# and run the whole suite. Every database test runs on SQLite and on a PostgreSQL server the tests
# start on 127.0.0.1 and stop again; the Redis bus tests start their own redis-server likewise.
set -euo pipefail
cd "$(dirname "$0")/.."
SANKE_EXTRAS="[test]" bash scripts/bootstrap.sh postgresql redis-server chromium fonts-wqy-microhei
export SANKE_TEST_REQUIRE_PG=1 SANKE_TEST_REQUIRE_REDIS=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
