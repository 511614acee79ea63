"""WorkerPool: this node's media workers, and which one hosts which router (lesson).

``size >= 1`` starts that many worker processes (``python -m media.worker_process``), each
talking to the pool over one end of a ``socket.socketpair()`` passed with ``pass_fds``.
``size == 0`` runs a single worker inside this process, over a socketpair Channel too, with
the very same code (:func:`media.worker_process.run_worker`) — for tests and small machines.

Signaling never calls a worker directly: it asks the pool (:meth:`WorkerPool.request`) with a
router id, and the pool routes the message to the worker hosting that router, so a worker
could later live on another node.

Placement is sticky (a router stays on its worker) and otherwise picks the worker with the
fewest routers; :meth:`WorkerPool.place` puts a router on a given worker (a lesson spread over
several workers has one router on each, linked by pipes: ``media.pipe``), and each worker keeps
the consumer count signaling noted for its subscriber transports (``note_consumers``), the
headroom a big lesson's subscribers are placed by.  Other nodes' workers (``add_remote``) count by
what their node advertised free in the registry (``set_lender_free``, ``headroom``) when it did.  A worker process that dies is logged with its exit code, reported to the
listeners as ``("worker_died", {"routers": [...], "pid": ..., "exit_code": ...})`` and
replaced in the same slot (at most :data:`MAX_RESTARTS` times per :data:`RESTART_WINDOW`
seconds per slot).

``spare=True`` keeps one more worker process started and idle (``sanke-spare``): a dead
worker's slot is taken by it at once (it is told its slot with ``worker.adopt``), so the lessons
of the dead worker get their media back without waiting for a Python process to start and import
the media stack (seconds on a busy machine); a new spare is started in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media import ice
from media.channel import Channel, ChannelError, open_channel
from media.ice import IcePolicy
from media.worker_process import (
    DEFAULT_WORKER_CLASS,
    ICE_ENV,
    READY_EVENT,
    WorkerClassMissing,
    load_worker_class,
    policy_from_strings,
    run_worker,
)

log = logging.getLogger(__name__)

Listener = Callable[[int, str, dict], None]

REMOTE_INDEX = 100
"""Index of the first other node's workers (``add_remote``)."""
REMOTE_RETRY_S = 2.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
CLOSE_GRACE = 5.0
START_TIMEOUT = 30.0
WORKER_DIED = "worker_died"
ADOPT_METHOD = "worker.adopt"
"""Request to a spare worker taking a slot: ``{index}`` → {} (its process name, core and log prefix)."""

_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)

__all__ = ["WorkerPool", "WorkerHandle", "WorkerClassMissing", "WORKER_DIED"]


@dataclass(eq=False)
class WorkerHandle:
    """One media worker (a slot of the pool)."""

    index: int
    pid: int | None
    """The worker process, or None for the in-process worker."""
    channel: Channel
    routers: set[str] = field(default_factory=set)
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    """In-process mode: the task serving the worker end."""
    alive: bool = True
    slot: list[int] = field(default_factory=list)
    """``[index]``, shared with the channel's event callback (a spare changes it when it takes a slot)."""
    remote: str | None = None
    """``host:port`` of another node whose workers this handle reaches (``add_remote``), or None."""
    consumers: dict[tuple[str, str], int] = field(default_factory=dict)
    """Consumers per (router, subscriber transport) on this worker, as signaling placed them (``note_consumers``)."""

    @property
    def consumer_count(self) -> int:
        return sum(self.consumers.values())

    async def request(self, method: str, params: dict, timeout: float = 10.0) -> dict:
        return await self.channel.request(method, params, timeout)


class WorkerPool:
    def __init__(
        self,
        size: int,
        policy_strings: dict[str, str | None],
        *,
        worker_class: str = DEFAULT_WORKER_CLASS,
        on_event: Listener | None = None,
        pin: bool = False,
        spare: bool = False,
    ) -> None:
        """``pin``: worker processes are pinned to one CPU core each (slot i → the i-th allowed core).
        ``spare``: keep one idle worker process ready to take a dead worker's slot (not in-process)."""
        if size < 0:
            raise ValueError("a worker pool needs size >= 0 (0: one worker in this process)")
        self.size = size
        self.policy_strings = dict(policy_strings)
        self.worker_class = worker_class
        self.pin = pin
        self.workers: list[WorkerHandle] = []
        self._listeners: list[Listener] = [on_event] if on_event is not None else []
        self._router_worker: dict[str, WorkerHandle] = {}
        self._restarts: dict[int, deque[float]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._policy: IcePolicy | None = None
        self._worker_cls: type | None = None
        self._started = False
        self._closing = False
        self._applied_policy: IcePolicy | None = None
        self.spare = spare and size >= 1
        self._spare: WorkerHandle | None = None
        self._spare_task: asyncio.Task[None] | None = None
        self.remotes: list[WorkerHandle] = []
        """Other nodes' workers this node may spread a lesson onto (``add_remote``)."""
        self._remote_tasks: set[asyncio.Task[None]] = set()
        self._remote_by_address: dict[str, asyncio.Task[None]] = {}
        self._next_remote = REMOTE_INDEX
        self.lender_free: dict[str, tuple[int, int]] = {}
        """``host:port`` of a lending node → (the free consumers it advertised in its registry entry, this
        pool's consumers on it then); see ``headroom``."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        return self._started and not self._closing

    @property
    def in_process(self) -> bool:
        return self.size == 0

    async def start(self) -> None:
        """Import the worker class, check the ICE settings and start the workers.

        Raises :class:`WorkerClassMissing` when the worker module does not exist; any other
        import error, or a worker that fails to come up, propagates as well.
        """
        if self._started:
            return
        self._policy = policy_from_strings(self.policy_strings)
        self._worker_cls = load_worker_class(self.worker_class)
        self._started = True
        if self.in_process:
            # aioice is patched process-wide: install our policy unless one is already there
            # (a test's, or an embedding program's), and take it away again on close.
            current = ice.current_policy()
            if current is None:
                self._applied_policy = self._policy
                ice.apply(self._policy)
            elif current != self._policy:
                log.warning("media: in-process worker keeps the ICE policy already installed in this process")
        try:
            self.workers = list(await asyncio.gather(*(self._spawn(i) for i in range(max(self.size, 1)))))
        except BaseException:
            await self.close()
            raise
        for handle in self.workers:
            self._watch(handle)
        self._refill_spare()
        log.info("media: %d worker(s) started%s", len(self.workers),
                 " in this process" if self.in_process else f", pids {self.pids()}")

    async def close(self) -> None:
        """Close every worker: close its channel, wait up to 5 s, then kill. Idempotent.

        Every process is reaped. The pool can be started again afterwards."""
        if self._closing or not self._started:
            return
        self._closing = True
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._remote_tasks):
            task.cancel()
        for handle in list(self.remotes):
            await handle.channel.close()
        for task in list(self._remote_tasks):
            with contextlib.suppress(BaseException):
                await task
        self._remote_tasks.clear()
        self._remote_by_address.clear()
        self.lender_free.clear()
        self.remotes = []
        if self._spare_task is not None:
            # let a spare that is starting finish and stop it then: a process started by a cancelled
            # create_subprocess_exec would be left behind, unreaped
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._spare_task), START_TIMEOUT)
            self._spare_task.cancel()
        spare, self._spare = self._spare, None
        stopping = [*self.workers, *([spare] if spare is not None else [])]
        await asyncio.gather(*(self._stop(h) for h in stopping), return_exceptions=True)
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._router_worker.clear()
        if self._applied_policy is not None and ice.current_policy() is self._applied_policy:
            ice.reset()
        self._applied_policy = None
        self.workers = []
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ placement and requests

    def worker_for(self, router_id: str) -> WorkerHandle:
        """The worker hosting ``router_id``; a new router goes to the worker with the fewest."""
        handle = self._router_worker.get(router_id)
        if handle is not None and handle.alive:
            return handle
        candidates = [h for h in self.workers if h.alive and not h.channel.closed]
        if not candidates or self._closing:
            raise ChannelError("no_worker", "no media worker is running")
        handle = min(candidates, key=lambda h: (len(h.routers), h.index))
        handle.routers.add(router_id)
        self._router_worker[router_id] = handle
        return handle

    def place(self, router_id: str, index: int) -> WorkerHandle:
        """Put ``router_id`` on the worker of slot ``index`` (a lesson's router on another worker, fed by a
        pipe); a router already placed stays where it is."""
        handle = self._router_worker.get(router_id)
        if handle is not None and handle.alive:
            return handle
        handle = next((h for h in self.live_workers() if h.index == index), None)
        if self._closing or handle is None:
            raise ChannelError("no_worker", f"media worker {index} is not running")
        handle.routers.add(router_id)
        self._router_worker[router_id] = handle
        return handle

    def live_workers(self) -> list[WorkerHandle]:
        """This node's running workers, then the other nodes' that are connected."""
        return [h for h in (*self.workers, *self.remotes) if h.alive and not h.channel.closed]

    def hosts(self, router_id: str) -> bool:
        """``router_id`` is placed on one of this pool's workers."""
        return router_id in self._router_worker

    def add_remote(self, address: str, secret: bytes) -> None:
        """Use the workers another node offers at ``address`` (``media.remote``): connected in the
        background, again 2 s after it is lost (while this pool runs). Their index is 100 and up."""
        from media import remote

        remote.split_address(address)  # a bad address is refused now, not in the background
        if address in self._remote_by_address:
            return
        index = self._next_remote
        self._next_remote += 1

        async def keep() -> None:
            while not self._closing and self._started:
                closed = asyncio.Event()
                try:
                    channel = await remote.connect(address, secret, on_close=closed.set,
                                                   on_event=lambda e, d: self._emit(index, e, d),
                                                   name=f"media-remote-{address}")
                except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    log.warning("media: the workers of %s are out of reach: %s", address, exc)
                    await asyncio.sleep(REMOTE_RETRY_S)
                    continue
                handle = WorkerHandle(index=index, pid=None, channel=channel, remote=address, slot=[index])
                self.remotes = [h for h in self.remotes if h.index != index] + [handle]
                log.info("media: using the workers of %s (index %d)", address, index)
                try:
                    await closed.wait()
                finally:
                    handle.alive = False
                    routers = sorted(handle.routers)
                    for router_id in routers:
                        if self._router_worker.get(router_id) is handle:
                            del self._router_worker[router_id]
                    handle.routers.clear()
                    self.remotes = [h for h in self.remotes if h is not handle]
                    await channel.close()
                if self._closing:
                    return
                log.error("media: lost the workers of %s; lost routers: %s", address, ", ".join(routers) or "none")
                self._emit(index, WORKER_DIED, {"routers": routers, "pid": None, "exit_code": None,
                                                "remote": address})
                await asyncio.sleep(REMOTE_RETRY_S)

        task = asyncio.get_running_loop().create_task(keep(), name=f"media-remote-{address}")
        self._remote_tasks.add(task)
        self._remote_by_address[address] = task

    def remote_addresses(self) -> set[str]:
        """The other nodes' addresses this pool uses (``add_remote``)."""
        return set(self._remote_by_address)

    def remove_remote(self, address: str) -> bool:
        """Stop trying to reach ``address`` (a lending node gone from the registry) while it is out of reach;
        a connected one stays (its routers serve subscribers).  Answers whether it was stopped."""
        task = self._remote_by_address.get(address)
        if task is None or any(h.remote == address and h.alive and not h.channel.closed for h in self.remotes):
            return False
        task.cancel()
        del self._remote_by_address[address]
        self._remote_tasks.discard(task)
        self.lender_free.pop(address, None)
        return True

    def set_lender_free(self, address: str, free: int) -> None:
        """The free consumers the node at ``address`` advertised in its latest registry entry.  Counted from
        when the figure last changed: an entry that still says the same has not seen what was placed since."""
        free = max(0, int(free))
        if address in self.lender_free and self.lender_free[address][0] == free:
            return
        handle = next((h for h in self.remotes if h.remote == address), None)
        self.lender_free[address] = (free, handle.consumer_count if handle is not None else 0)

    def headroom(self, handle: WorkerHandle) -> int | None:
        """Consumers another node's workers (``handle``) still take, by what that node advertised minus what this
        pool placed there since; None: nothing advertised (a statically configured node)."""
        if handle.remote is None or handle.remote not in self.lender_free:
            return None
        free, then = self.lender_free[handle.remote]
        return free - max(0, handle.consumer_count - then)

    def note_consumers(self, router_id: str, transport_id: str, count: int) -> None:
        """``transport_id`` of ``router_id`` carries ``count`` consumers now (0: closed): the headroom that
        signaling places subscribers by."""
        handle = self._router_worker.get(router_id)
        if handle is None:
            return
        if count > 0:
            handle.consumers[(router_id, transport_id)] = count
        else:
            handle.consumers.pop((router_id, transport_id), None)

    def release(self, router_id: str) -> None:
        """Forget where ``router_id`` lives (after the router has been closed)."""
        handle = self._router_worker.pop(router_id, None)
        if handle is not None:
            handle.routers.discard(router_id)
            for key in [k for k in handle.consumers if k[0] == router_id]:
                del handle.consumers[key]

    async def request(self, router_id: str, method: str, params: dict, timeout: float = 10.0) -> dict:
        """Send a request to the worker hosting ``router_id`` (placing the router if new)."""
        return await self.worker_for(router_id).channel.request(method, params, timeout)

    def spare_pid(self) -> int | None:
        """The idle spare worker process, if one is ready."""
        return self._spare.pid if self._spare is not None and self._spare.alive else None

    def pids(self) -> list[int]:
        """Process ids of the live workers (this process's id for the in-process worker)."""
        return [h.pid if h.pid is not None else os.getpid() for h in self.workers if h.alive]

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """``fn(worker_index, event, data)`` for every worker event; returns the unsubscribe function."""
        self._listeners.append(fn)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(fn)

        return unsubscribe

    # ------------------------------------------------------------------ internals

    def _emit(self, index: int, event: str, data: dict) -> None:
        for listener in list(self._listeners):
            try:
                listener(index, event, data)
            except Exception:  # noqa: BLE001 - one bad listener must not hide events from others
                log.exception("media: listener failed for worker %d event %s", index, event)

    async def _spawn(self, index: int, *, spare: bool = False) -> WorkerHandle:
        assert self._policy is not None and self._worker_cls is not None
        parent_sock, child_sock = socket.socketpair()
        ready: asyncio.Future[dict | None] = asyncio.get_running_loop().create_future()  # None: closed
        slot = [index]

        def on_event(event: str, data: dict) -> None:
            if event == READY_EVENT:
                if not ready.done():
                    ready.set_result(data)
                return
            self._emit(slot[0], event, data)

        def on_close() -> None:
            if not ready.done():
                ready.set_result(None)

        process: asyncio.subprocess.Process | None = None
        task: asyncio.Task[None] | None = None
        try:
            if self.in_process:
                task = asyncio.get_running_loop().create_task(
                    run_worker(child_sock, index=index, policy=self._policy, worker_class=self._worker_cls),
                    name=f"media-worker-{index}")
            else:
                env = dict(os.environ)
                env[ICE_ENV] = json.dumps(self.policy_strings)
                env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "media.worker_process",
                    "--index", str(index), "--fd", str(child_sock.fileno()),
                    "--worker-class", self.worker_class, *(["--pin"] if self.pin else []),
                    *(["--spare"] if spare else []),
                    pass_fds=(child_sock.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=env)
                child_sock.close()
            channel = await open_channel(parent_sock, on_event=on_event, on_close=on_close,
                                         name=f"media-pool-{index}")
            channel.start()
            if process is not None:
                exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
            else:
                assert task is not None
                exited = asyncio.get_running_loop().create_future()
                task.add_done_callback(lambda _: exited.done() or exited.set_result(None))
            try:
                done, _ = await asyncio.wait({ready, exited}, timeout=START_TIMEOUT,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not exited.done():
                    exited.cancel()
            if ready not in done or ready.result() is None:
                if process is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(process.wait(), 2.0)
                code = process.returncode if process else None
                cause = task.exception() if task is not None and task.done() and not task.cancelled() else None
                raise RuntimeError(f"media worker {index} did not start"
                                   + (f" (exit code {code})" if code is not None else "")
                                   + (f": {cause!r}" if cause is not None else "")
                                   + (f" (no sign of life within {START_TIMEOUT:.0f} s)" if not done else "")
                                   ) from cause
        except BaseException:
            parent_sock.close()
            child_sock.close()
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            raise
        pid = process.pid if process else None
        log.info("media: worker %d up%s", index, f" (pid {pid})" if pid else " (in this process)")
        return WorkerHandle(index=index, pid=pid, channel=channel, process=process, task=task, slot=slot)

    def _refill_spare(self) -> None:
        """Start a spare worker in the background, unless one is there or starting."""
        if (not self.spare or self._closing or not self._started or self._spare is not None
                or (self._spare_task is not None and not self._spare_task.done())):
            return
        self._spare_task = asyncio.get_running_loop().create_task(self._start_spare(), name="media-spare")

    async def _start_spare(self) -> None:
        index = len(self.workers)  # its slot number until it takes a real one
        now = time.monotonic()
        history = self._restarts.setdefault(index, deque())
        while history and now - history[0] > RESTART_WINDOW:
            history.popleft()
        if len(history) >= MAX_RESTARTS:
            log.critical("media: spare worker failed %d times within %.0f s; running without one",
                         len(history), RESTART_WINDOW)
            return
        history.append(now)
        try:
            handle = await self._spawn(index, spare=True)
        except Exception:  # noqa: BLE001 - no spare: a dead worker is replaced by a new process instead
            log.exception("media: could not start a spare worker")
            return
        if self._closing:
            await self._stop(handle)
            return
        self._spare = handle
        self._watch(handle)
        log.info("media: spare worker ready (pid %s)", handle.pid)

    async def _take_spare(self, index: int) -> WorkerHandle | None:
        """The spare, now serving slot ``index``; None when there is none (or it fails to adopt)."""
        spare, self._spare = self._spare, None
        if spare is None or not spare.alive or spare.channel.closed:
            return None
        try:
            await spare.channel.request(ADOPT_METHOD, {"index": index}, timeout=5.0)
        except (ChannelError, TimeoutError):
            log.exception("media: the spare worker (pid %s) did not take slot %d", spare.pid, index)
            await self._stop(spare)
            return None
        spare.index = index
        spare.slot[:] = [index]
        return spare

    def _watch(self, handle: WorkerHandle) -> None:
        watcher = asyncio.get_running_loop().create_task(self._watch_worker(handle), name=f"media-watch-{handle.index}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch_worker(self, handle: WorkerHandle) -> None:
        exit_code: int | None = None
        if handle.process is not None:
            exit_code = await handle.process.wait()
        else:
            assert handle.task is not None
            try:
                await asyncio.shield(handle.task)
            except asyncio.CancelledError:
                if handle.task.cancelled():
                    exit_code = -1
                else:
                    raise
            except Exception:  # noqa: BLE001 - reported below
                log.exception("media: in-process worker %d failed", handle.index)
                exit_code = 1
        if self._closing or not handle.alive:
            return
        await self._on_death(handle, exit_code)

    async def _on_death(self, handle: WorkerHandle, exit_code: int | None) -> None:
        if handle is self._spare:  # an idle spare died: nothing was on it; start another
            self._spare = None
            handle.alive = False
            await handle.channel.close()
            log.error("media: the spare worker (pid %s) died with exit code %s", handle.pid, exit_code)
            self._refill_spare()
            return
        if handle not in self.workers:  # a spare that died while taking a slot: nothing was on it
            handle.alive = False
            await handle.channel.close()
            return
        handle.alive = False
        routers = sorted(handle.routers)
        for router_id in routers:
            if self._router_worker.get(router_id) is handle:
                del self._router_worker[router_id]
        handle.routers.clear()
        await handle.channel.close()
        log.error("media: worker %d (pid %s) died with exit code %s; lost routers: %s",
                  handle.index, handle.pid, exit_code, ", ".join(routers) or "none")
        self._emit(handle.index, WORKER_DIED, {"routers": routers, "pid": handle.pid, "exit_code": exit_code})
        now = time.monotonic()
        history = self._restarts.setdefault(handle.index, deque())
        while history and now - history[0] > RESTART_WINDOW:
            history.popleft()
        if len(history) >= MAX_RESTARTS:
            log.critical("media: worker %d died %d times within %.0f s; not restarting it",
                         handle.index, len(history) + 1, RESTART_WINDOW)
            return
        history.append(now)
        replacement = await self._take_spare(handle.index)
        if replacement is not None:
            self.workers[handle.index] = replacement  # watched since it started
            log.info("media: worker %d replaced by the spare (pid %s)", handle.index, replacement.pid)
            self._refill_spare()
            return
        try:
            replacement = await self._spawn(handle.index)
        except Exception:  # noqa: BLE001 - the slot stays empty; the others keep serving
            log.exception("media: could not restart worker %d", handle.index)
            return
        if self._closing:
            await self._stop(replacement)
            return
        self.workers[handle.index] = replacement
        self._watch(replacement)
        log.info("media: worker %d replaced (pid %s)", handle.index, replacement.pid)
        self._refill_spare()

    async def _stop(self, handle: WorkerHandle) -> None:
        handle.alive = False
        await handle.channel.close()
        if handle.process is not None:
            process = handle.process
            try:
                await asyncio.wait_for(process.wait(), CLOSE_GRACE)
            except asyncio.TimeoutError:
                log.warning("media: worker %d (pid %s) did not stop within %.0f s; killing it",
                            handle.index, handle.pid, CLOSE_GRACE)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
                await process.wait()
        elif handle.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(handle.task), CLOSE_GRACE)
            except asyncio.TimeoutError:
                handle.task.cancel()
            except Exception:  # noqa: BLE001
                log.exception("media: in-process worker %d failed while closing", handle.index)
            with contextlib.suppress(BaseException):
                await handle.task
