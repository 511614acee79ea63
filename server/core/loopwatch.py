"""Event-loop stall watch (opt-in): how late the node's event loop runs, what it ran while late, and
how long Python's garbage collections took.

Owns three probes, all off unless ``SANKE_LOOP_WATCH_FILE`` names a file (``LoopWatch`` from the app's
lifespan):

* a tick task on the loop that sleeps ``tick_s`` and records how late it woke (the loop's lag);
* a watchdog thread that, while the loop has not ticked for ``stall_s``, samples the loop thread's
  Python stack (``sys._current_frames``) every ``sample_s``: a stall is written with the stacks seen;
* a ``gc.callbacks`` hook timing every collection (generation, milliseconds, objects collected).

Each stall and collection also carries the CPU time of its thread (``time.thread_time``): a stall whose
thread was on a core for much less than its length is a loop that waited (for the GIL another thread
held, or for a core the machine gave to another process), not one that worked.

What it writes is JSON lines, appended and flushed by the watchdog thread (never by the loop):
``{"stall": ...}`` for each stall (start wall time, milliseconds, the collections inside it, the
most frequent stacks), ``{"gc": ...}`` for a collection of at least ``gc_report_ms``, and every
``summary_s`` a ``{"summary": ...}`` line (tick lag p50/p99/max, collections per generation and their
time).  ``bench.signaling --watch`` reads them per step.

Must not: change what the loop runs (it only observes), log per tick, or keep more than one summary
interval of samples.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

STACK_DEPTH = 14
"""Frames kept of a sample, innermost first."""
TOP_STACKS = 4
"""Distinct stacks written per stall, the most frequent first."""


def _stack(frame: FrameType | None) -> tuple[str, ...]:
    out: list[str] = []
    while frame is not None and len(out) < STACK_DEPTH:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return tuple(out)


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class LoopWatch:
    """The three probes for the running loop, written to ``path``; an async context manager."""

    def __init__(self, path: Path, *, tick_s: float = 0.005, stall_s: float = 0.020, sample_s: float = 0.005,
                 gc_report_ms: float = 5.0, summary_s: float = 10.0, census: bool = False) -> None:
        self.path = path
        self.tick_s, self.stall_s, self.sample_s = tick_s, stall_s, sample_s
        self.gc_report_ms, self.summary_s = gc_report_ms, summary_s
        self.census = census
        """Also write, with each summary, the tracked objects by type (stalls the loop itself: diagnosis only)."""
        self._beat = time.monotonic()
        self._lags: list[float] = []
        self._late: list[tuple[float, float, float]] = []
        """(monotonic beat before, lag, the loop thread's CPU seconds meanwhile) of each tick at least
        ``stall_s`` late, for the watchdog to write: CPU far below the stall's length is a loop that waited
        (for the GIL another thread held, or for a core), not one that worked."""
        self._gc_start = self._gc_cpu = 0.0
        self._young: tuple[int, int, Any, Any] | None = None
        """With ``census``: one young generation's size and make-up, as a collection of it began."""
        self._gcs: list[tuple[float, int, float, int, float]] = []
        """(monotonic end, generation, ms, collected, CPU ms) since the watchdog last took them."""
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ on the loop

    async def _tick(self) -> None:
        tick = self.tick_s
        while True:  # time.monotonic, not loop.time: uvloop's clock counts whole milliseconds
            t, cpu = time.monotonic(), time.thread_time()
            self._beat = t
            await asyncio.sleep(tick)
            lag = max(0.0, time.monotonic() - t - tick)
            lags = self._lags  # the watchdog swaps the list every summary_s
            if len(lags) > 100_000:  # bounded if it does not
                lags.clear()
            lags.append(lag)
            if lag >= self.stall_s and len(self._late) < 10_000:
                self._late.append((self._beat, lag, time.thread_time() - cpu))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if self.census and info.get("generation") in (0, 1) and self._young is None:
                young = gc.get_objects(generation=info["generation"])
                self._young = (info["generation"], len(young),
                               Counter(type(o).__qualname__ for o in young).most_common(12),
                               sorted(((len(o), type(o).__qualname__) for o in young
                                       if isinstance(o, (list, dict, set, tuple, deque))), reverse=True)[:8])
                del young
            self._gc_start, self._gc_cpu = time.perf_counter(), time.thread_time()
            return
        ms = (time.perf_counter() - self._gc_start) * 1000.0
        cpu_ms = (time.thread_time() - self._gc_cpu) * 1000.0
        self._gcs.append((time.monotonic(), int(info.get("generation", -1)), ms, int(info.get("collected", 0)),
                          cpu_ms))

    # ------------------------------------------------------------------ the watchdog thread

    def _watch(self, out: TextIO) -> None:
        sampled: dict[float, Counter[tuple[str, ...]]] = {}
        """The loop thread's stacks seen while it was late, by the beat it was late after."""
        next_summary = time.monotonic() + self.summary_s
        gc_count = [0, 0, 0]
        gc_ms = [0.0, 0.0, 0.0]
        gc_max = [0.0, 0.0, 0.0]
        recent: deque[tuple[float, int, float, int, float]] = deque()

        def write(obj: dict[str, Any]) -> None:
            out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
            out.flush()

        while not self._stop.is_set():
            now = time.monotonic()
            beat = self._beat
            if now - beat - self.tick_s >= self.stall_s:  # late now: what is the loop thread running?
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    sampled.setdefault(beat, Counter())[_stack(frame)] += 1
            gcs, self._gcs = self._gcs, []
            recent.extend(gcs)
            while recent and recent[0][0] < now - 10.0:
                recent.popleft()
            late, self._late = self._late, []
            for since, lag, cpu in late:  # every late tick, sampled or not (a collection holds the GIL throughout)
                samples = sampled.pop(since, Counter())
                until = since + self.tick_s + lag
                inside = [g for g in recent if since <= g[0] <= until + 0.001]
                write({"stall": {"at": round(time.time() - (now - since), 3), "ms": round(lag * 1000.0, 1),
                                 "cpu_ms": round(cpu * 1000.0, 1),
                                 "gc": [{"gen": g[1], "ms": round(g[2], 1), "cpu_ms": round(g[4], 1)}
                                        for g in inside],
                                 "stacks": [{"n": n, "stack": list(s)} for s, n in samples.most_common(TOP_STACKS)]}})
            for since in [b for b in sampled if b < now - 60.0]:
                del sampled[since]
            for g in gcs:
                gen = g[1] if 0 <= g[1] <= 2 else 2
                gc_count[gen] += 1
                gc_ms[gen] += g[2]
                gc_max[gen] = max(gc_max[gen], g[2])
                if g[2] >= self.gc_report_ms:
                    write({"gc": {"at": round(time.time() - (time.monotonic() - g[0]), 3), "gen": g[1],
                                  "ms": round(g[2], 1), "cpu_ms": round(g[4], 1), "collected": g[3]}})
            if now >= next_summary:
                lags, self._lags = self._lags, []
                lags.sort()
                write({"summary": {"at": round(time.time(), 3), "ticks": len(lags),
                                   "lag_ms": {"p50": round(_pct(lags, 0.5) * 1000, 2),
                                              "p99": round(_pct(lags, 0.99) * 1000, 2),
                                              "max": round(_pct(lags, 1.0) * 1000, 2)},
                                   "gc": {str(i): {"n": gc_count[i], "ms": round(gc_ms[i], 1),
                                                   "max_ms": round(gc_max[i], 1)} for i in range(3)},
                                   "gc_count": list(gc.get_count())}})
                if self.census:
                    objects = gc.get_objects()
                    by_type = Counter(type(o).__qualname__ for o in objects)
                    coros = Counter(o.cr_code.co_qualname for o in objects if type(o).__name__ == "coroutine")
                    funcs = Counter(o.__qualname__ for o in objects if type(o).__name__ == "function")
                    del objects
                    young, self._young = self._young, None
                    write({"census": {"at": round(time.time(), 3), "tracked": sum(by_type.values()),
                                      "young": young,
                                      "top": by_type.most_common(25), "coroutines": coros.most_common(25),
                                      "functions": funcs.most_common(15)}})
                gc_count, gc_ms, gc_max = [0, 0, 0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
                next_summary = now + self.summary_s
            self._stop.wait(self.sample_s)

    # ------------------------------------------------------------------ start / stop

    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        out = self.path.open("a", encoding="utf-8")
        gc.callbacks.append(self._on_gc)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_watch, args=(out,), name="sanke-loopwatch", daemon=True)
        self._thread.start()
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="sanke-loopwatch")

    def _run_watch(self, out: TextIO) -> None:
        try:
            self._watch(out)
        finally:
            out.close()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None

    async def __aenter__(self) -> LoopWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
