"""``server.core.nodeload.NodeLoad``: rates per worker over a second or more, totals per slot that go on
growing across a worker process that died and was replaced, rooms and participants by role."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS
from typing import Any

import pytest

from media.channel import ChannelError
from server.core import nodeload
from server.core.nodeload import NodeLoad


class FakeWorker:
    def __init__(self, index: int, pid: int) -> None:
        self.index, self.pid, self.alive = index, pid, True
        self.channel = NS(closed=False)
        self.answer: dict[str, Any] = {}
        self.fail = False

    async def request(self, method: str, params: dict, timeout: float = 10.0) -> dict:
        assert method == "worker.load"
        if self.fail:
            raise ChannelError("closed", "gone")
        return {"pid": self.pid, **self.answer}


def answer(cpu_s: float, packets: int, consumers: int = 0) -> dict[str, Any]:
    return {"cpu_s": cpu_s, "forwarded_packets": packets, "forwarded_bytes": packets * 1000, "received_packets": 0,
            "lost_up": 0, "lost_down": 0, "routers": 1, "transports": 2, "producers": 1, "consumers": consumers}


def test_rates_totals_and_a_replaced_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(nodeload.time, "monotonic", lambda: now[0])
    w0 = FakeWorker(0, pid=11)
    pool = NS(started=True, workers=[w0])
    participants = {"p1": NS(role=NS(value="main")), "p2": NS(role=NS(value="receiving")),
                    "p3": NS(role=NS(value="receiving"))}
    rooms = NS(rooms={7: NS(participants=participants), 8: NS(participants={})})
    load = NodeLoad(pool, lambda: rooms)

    async def run() -> None:
        w0.answer = answer(10.0, 1000, consumers=4)
        first = await load.sample()
        assert first.rooms == 2 and first.participants == 3
        assert first.participants_by_role == {"main": 1, "receiving": 2}
        [w] = first.workers
        assert (w.index, w.pid, w.consumers, w.cpu, w.packets_per_s) == (0, 11, 4, 0.0, 0.0)
        assert w.totals["forwarded_packets"] == 1000 and w.cpu_seconds == 10.0

        now[0] += 2.0
        w0.answer = answer(11.0, 3000)
        [w] = (await load.sample()).workers
        assert w.cpu == pytest.approx(0.5) and w.packets_per_s == pytest.approx(1000)  # over 2 s
        # a sample younger than max_age is the same sample
        assert (await load.sample(max_age=1.0)).workers[0] is w
        now[0] += 0.3  # too short a window for a rate: the last rates stay
        w0.answer = answer(11.3, 3100)
        [w] = (await load.sample()).workers
        assert w.cpu == pytest.approx(0.5) and w.totals["forwarded_packets"] == 3100

        # the worker dies and a new process takes its slot: its counters start at zero, the slot's go on
        pool.workers = [FakeWorker(0, pid=22)]
        pool.workers[0].answer = answer(0.5, 200)
        now[0] += 1.0
        [w] = (await load.sample()).workers
        assert w.pid == 22 and w.totals["forwarded_packets"] == 3300 and w.cpu_seconds == pytest.approx(11.8)
        # a worker that does not answer is left out, not counted as zero
        pool.workers[0].fail = True
        assert (await load.sample()).workers == []

    asyncio.run(run())
