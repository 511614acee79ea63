"""media.pool with a spare worker: a dead worker's slot is taken at once by the idle spare (renamed to
the slot, its events carrying the slot's index), a new spare starts, and closing reaps every process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from media.pool import WORKER_DIED, WorkerPool
from tests.media.test_pool import FAKE, POLL, gone, reaped, run
from tests.utils.wait import until, wait_until


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_dead_workers_slot_is_taken_by_the_spare_at_once_and_a_new_spare_starts() -> None:
    events: list[tuple[int, str, dict]] = []

    async def main() -> list[int]:
        pool = WorkerPool(1, {}, worker_class=FAKE, spare=True, on_event=lambda i, e, d: events.append((i, e, d)))
        await pool.start()
        try:
            [first] = pool.pids()
            await until("a spare worker", lambda: pool.spare_pid() is not None, **POLL)
            spare = pool.spare_pid()
            assert spare is not None and spare != first and _comm(spare) == "sanke-spare"
            assert pool.pids() == [first]  # the spare serves nothing

            os.kill(first, signal.SIGKILL)
            killed = time.monotonic()
            await until("the spare serving", lambda: pool.pids() == [spare], **POLL)
            took = time.monotonic() - killed
            assert took < 1.0, f"the spare took {took:.2f} s to take the slot"
            assert [d["pid"] for _, e, d in events if e == WORKER_DIED] == [first]
            assert _comm(spare) == "sanke-media-0"
            assert (await pool.request("r", "router.create", {"routerId": "r"}))["pid"] == spare
            await until("router.created", lambda: any(e == "router.created" for _, e, _ in events), **POLL)
            assert [i for i, e, _ in events if e == "router.created"] == [0]  # the slot's index

            await until("a new spare", lambda: pool.spare_pid() not in (None, spare), **POLL)  # a new spare
            second = pool.spare_pid()
            assert second is not None and not gone(second)
            return [first, spare, second]
        finally:
            await pool.close()

    for pid in run(main(), timeout=40):
        assert reaped(pid), f"worker {pid} left behind"


def test_closing_while_the_spare_starts_leaves_no_process_behind() -> None:
    async def main() -> None:
        pool = WorkerPool(1, {}, worker_class=FAKE, spare=True)
        await pool.start()
        await pool.close()  # the spare is still starting

    run(main(), timeout=40)
    wait_until(lambda: f"worker processes left behind: {_worker_children()}", lambda: not _worker_children(), 5,
               interval=0.05)


def _worker_children() -> list[int]:
    """This process's children (alive or zombie) that run a media worker (other tests' servers aside)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        ppid = int(rest.split()[1])
        if ppid == os.getpid() and (b"media.worker_process" in cmdline or name.startswith("sanke-")):
            found.append(int(entry.name))
    return found
