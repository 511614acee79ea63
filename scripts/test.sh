#!/usr/bin/env bash
# Set up everything the tests need (Debian: PostgreSQL, redis-server, chromium, coturn; Python: SanKe + test
# extras, incl. the playwright package that drives /usr/bin/chromium — never `playwright install`;
# a CJK font so the pages' screenshots show their Chinese text)
# and run the whole suite. Every database test runs on SQLite and on a PostgreSQL server the tests
# start on 127.0.0.1 and stop again; the Redis bus tests start their own redis-server likewise.
#
# Arguments go to pytest (e.g. `scripts/test.sh tests/server/test_demo.py -k postgresql`).
#
# What this script requires is explicit, so a machine that lacks something fails instead of passing
# with skips: a missing PostgreSQL, redis-server, Chromium or Playwright, or a machine where the
# weak-link lab's network namespaces cannot be made (tests/linklab: root, iproute2, ethtool) or the
# firewalled school's coturn cannot run (tests/turn: coturn, nftables, openssl), is a failure
# (SANKE_TEST_REQUIRE_PG / _REDIS / _BROWSER / _NETNS / _TURN), and the property tests draw the same examples on every
# run (SANKE_HYPOTHESIS_PROFILE=ci).
#
# The suite passes on any day. To show it, run it with the clock moved to another day:
#   SANKE_TEST_FAKETIME="2027-03-08 10:00:00" scripts/test.sh
# runs pytest under Debian's libfaketime (package faketime, installed with apt only then): the
# real-time clock of the test process and of every process it starts (servers, PostgreSQL, Chromium)
# starts at that instant, in the machine's time zone, and runs on from there; the monotonic clock
# (timeouts, asyncio) stays real.
set -euo pipefail
cd "$(dirname "$0")/.."
# iproute2, ethtool: tests/linklab; coturn, nftables, openssl: tests/turn (coturn in network namespaces);
# nginx: tests/server/test_hls_nginx.py (the documented origin of the LL-HLS stream)
SANKE_EXTRAS="[test]" bash scripts/bootstrap.sh postgresql redis-server chromium fonts-wqy-microhei \
  iproute2 ethtool coturn nftables openssl nginx ${SANKE_TEST_FAKETIME:+faketime}
export SANKE_TEST_REQUIRE_PG=1 SANKE_TEST_REQUIRE_REDIS=1 SANKE_TEST_REQUIRE_BROWSER=1 SANKE_TEST_REQUIRE_NETNS=1 \
  SANKE_TEST_REQUIRE_TURN=1 SANKE_TEST_REQUIRE_NGINX=1
export SANKE_HYPOTHESIS_PROFILE=${SANKE_HYPOTHESIS_PROFILE:-ci}
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider "$@")
if [ -n "${SANKE_TEST_FAKETIME:-}" ]; then
  start=$(date -d "$SANKE_TEST_FAKETIME" '+%Y-%m-%d %H:%M:%S') || { echo "SANKE_TEST_FAKETIME: not a date" >&2; exit 2; }
  echo "==> the clock starts at $start $(date -d "$start" '+%Z (%A)')"
  lib=$(dpkg -L libfaketime | grep '/libfaketimeMT\.so\.1$' | head -1)
  shim=.venv/lib/sanke-faketime-shim.so  # see scripts/faketime_shim.c
  gcc -shared -fPIC -O2 -o "$shim" scripts/faketime_shim.c -ldl
  # Three programs run on the real clock, through these wrappers: redis-server (its jemalloc cannot
  # start under libfaketime; the bus's pub/sub does not read the clock), Chromium (slowed down many
  # times by it; the browser tests set the pages' clock themselves, with Playwright) and Playwright's
  # node driver (its page clock must count from the same clock as the browser's).
  node=$(.venv/bin/python -c 'import pathlib, playwright; print(pathlib.Path(playwright.__file__).parent / "driver" / "node")')
  mkdir -p .venv/faketime-bin
  for prog in redis-server "${SANKE_CHROMIUM:-/usr/bin/chromium}" "${PLAYWRIGHT_NODEJS_PATH:-$node}"; do
    printf '#!/bin/sh\nunset LD_PRELOAD FAKETIME\nexec %s "$@"\n' "$(command -v "$prog")" \
      > ".venv/faketime-bin/$(basename "$prog")"
    chmod +x ".venv/faketime-bin/$(basename "$prog")"
  done
  export PATH="$PWD/.venv/faketime-bin:$PATH" \
    SANKE_CHROMIUM="$PWD/.venv/faketime-bin/$(basename "${SANKE_CHROMIUM:-/usr/bin/chromium}")" \
    PLAYWRIGHT_NODEJS_PATH="$PWD/.venv/faketime-bin/$(basename "${PLAYWRIGHT_NODEJS_PATH:-$node}")"
  # FAKETIME "@…": start at that instant and run; DONT_RESET: a child process goes on from its parent's
  # clock instead of starting again at the instant
  exec env LD_PRELOAD="$PWD/$shim:$lib${LD_PRELOAD:+:$LD_PRELOAD}" FAKETIME="@$start" \
    FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_DONT_RESET=1 "${PYTEST[@]}"
fi
exec "${PYTEST[@]}"
