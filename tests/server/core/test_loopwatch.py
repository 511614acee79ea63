"""``server.core.loopwatch``: a stall of the event loop is written with the stack that ran in it, and
a garbage collection with its generation and time."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from server.core.loopwatch import LoopWatch


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def _until(path: Path, key: str, deadline_s: float = 10.0,
                 where: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[dict[str, Any]]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = [x[key] for x in _lines(path) if key in x and where(x[key])]
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {key!r} line in {deadline_s} s: {_lines(path)}")


def _blocks_the_loop_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # busy: holds the GIL as a long handler would, between switches
        sum(range(1000))


def test_a_stall_is_written_with_its_length_and_the_stack_that_ran_in_it(tmp_path: Path) -> None:
    path = tmp_path / "watch.jsonl"

    async def scenario() -> None:
        async with LoopWatch(path, stall_s=0.03, summary_s=0.2):
            await asyncio.sleep(0.1)  # ticks running
            _blocks_the_loop_for(0.25)
            stalls = await _until(path, "stall")
            late = await _until(path, "summary", where=lambda s: s["lag_ms"]["max"] >= 200)
        assert len(stalls) == 1, stalls
        stall = stalls[0]
        assert 200 <= stall["ms"] <= 2000, stall
        assert 0 <= stall["cpu_ms"] <= stall["ms"] + 50, stall
        frames = [f for s in stall["stacks"] for f in s["stack"]]
        assert any("_blocks_the_loop_for" in f for f in frames), stall["stacks"]
        assert late[0]["lag_ms"]["max"] <= 2000, late

    asyncio.run(scenario())


def test_a_loop_that_keeps_up_has_no_stall(tmp_path: Path) -> None:
    path = tmp_path / "watch.jsonl"

    async def scenario() -> None:
        async with LoopWatch(path, stall_s=0.5, summary_s=0.1):
            for _ in range(20):
                await asyncio.sleep(0.01)
            await _until(path, "summary")
        assert not [x for x in _lines(path) if "stall" in x]

    asyncio.run(scenario())


def test_a_full_collection_is_written_with_its_generation_and_time(tmp_path: Path) -> None:
    path = tmp_path / "watch.jsonl"

    async def scenario() -> None:
        watch = LoopWatch(path, gc_report_ms=0.0, summary_s=0.1)
        async with watch:
            gc.collect(2)
            collections = await _until(path, "gc")
            counted = await _until(path, "summary", where=lambda s: s["gc"]["2"]["n"] >= 1)
        assert any(c["gen"] == 2 and c["ms"] >= 0 for c in collections), collections
        assert counted[0]["gc"]["2"]["max_ms"] >= 0
        assert not any(getattr(cb, "__self__", None) is watch for cb in gc.callbacks)  # its hook is gone

    asyncio.run(scenario())
