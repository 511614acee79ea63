"""Failover time: ``kill -9`` of the node that owns a lesson to the last participant decoding again.

Three ``sanke serve`` nodes on 127.0.0.1 (one PostgreSQL, one redis-server, all started here and
stopped at the end; heartbeat 1 s, room lease 3 s as by default).  Each run is the failover test's
scenario (``tests/server/test_failover_nodes.py``) on a lesson of its own: a recorded 名校网络课堂 with
the teacher's camera, two receiving classrooms (one on stage, publishing), a home student and an
observer, all aiortc clients decoding their pictures; the owner is killed with SIGKILL; every client
follows by itself (``LessonClient(rejoin=...)``, a new join token from a node that answers); the time
is from the kill to the moment the last of the ten (participant, picture) pairs decodes the expected
colour again.  The killed node is started again before the next run.  Printed: every run, then the
median and the maximum.

    .venv/bin/python -m bench.failover [--runs 10] [--budget-s 900]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis

from media import ice
from tests.records.killable import POLICY
from tests.server.test_failover_nodes import HEARTBEAT_S, LEASE_S, NAMES, Lesson, kill_owner_mid_lesson, prepare
from tests.utils.cluster import start_node, start_nodes
from tests.utils.pgserver import PostgresServer
from tests.utils.redisserver import RedisServer
from tests.utils.tcpcut import TcpCut
from tests.utils.wait import wait_until


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=900.0, help="stop starting runs after this long")
    args = parser.parse_args(argv)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, "-m", "bench.failover", *(argv or sys.argv[1:])]))
    started = time.monotonic()
    ice.apply(POLICY)  # the clients here gather on 127.0.0.1 only
    tmp = Path(tempfile.mkdtemp(prefix="sanke-failover-"))
    pg = PostgresServer().start()
    rs = RedisServer().start()
    results: list[float] = []
    try:
        db_url = pg.create_database(f"sanke_bench_failover_{os.getpid()}")
        lessons, users, access, clock_at = prepare(db_url, count=args.runs)
        with ExitStack() as stack:
            links: dict[str, TcpCut] = {}
            common = dict(db_url=db_url, redis_port=rs.port, tmp_path=tmp, clock_at=clock_at, heartbeat_s=HEARTBEAT_S,
                          lease_s=LEASE_S, links=links, SANKE_ICE_HOST_ADDRESSES="127.0.0.1",
                          SANKE_ICE_ALLOWED_NETWORKS="127.0.0.0/8")
            nodes = start_nodes(stack, NAMES, redis_url=rs.url, **common)
            r = redis.Redis.from_url(rs.url)
            for run, lesson_id in enumerate(lessons, 1):
                if time.monotonic() - started > args.budget_s:
                    print(f"budget of {args.budget_s:.0f} s spent: {run - 1} runs")
                    break
                lesson = Lesson(nodes, r, db_url, lesson_id, users, access, set())
                out = asyncio.run(kill_owner_mid_lesson(lesson))
                worst = max(out["times"].values())
                results.append(worst)
                slowest = max(out["times"], key=out["times"].get)
                print(f"run {run}: owner {out['owner']} killed; last back after {worst:.2f} s ({slowest}); "
                      f"first after {min(out['times'].values()):.2f} s", flush=True)
                dead = out["owner"]  # started again (same node id and folder), as an operator would
                nodes[dead] = start_node(stack, dead, **common)  # type: ignore[arg-type]
                wait_until("the node back", lambda: r.exists(f"sanke:node:{dead}") == 1
                           and r.exists(f"sanke:node-live:{dead}") == 1, 60)
            r.close()
    finally:
        rs.stop()
        pg.stop()
    if results:
        print(f"failover (kill -9 to the last participant decoding again), {len(results)} runs: "
              f"p50 {statistics.median(results):.2f} s, max {max(results):.2f} s")
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
