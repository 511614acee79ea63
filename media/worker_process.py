"""A media worker process: ``python -m media.worker_process --index N --fd FD [--ice-json JSON]``.

The server (:class:`media.pool.WorkerPool`) starts one per core.  The process

1. builds the ICE policy from the same strings as the server's settings (``ice_servers``,
   ``ice_host_addresses``, ``ice_allowed_networks``, ``ice_announced_address``) given as a JSON
   object in ``--ice-json`` or, when that is absent, in the environment variable
   ``SANKE_MEDIA_WORKER_ICE_JSON`` (the pool uses the variable, so TURN credentials never show
   in ``ps``), and installs it with :func:`media.ice.apply`;
2. runs on uvloop (:mod:`media.eventloop`: a wake-up costs a third of asyncio's own loop);
   opens the inherited socket ``--fd`` as a :class:`~media.channel.Channel`;
3. creates the worker (``--worker-class``, default ``media.worker:Worker``) and tells the pool
   it is ready with a ``worker.ready`` notification;
4. answers requests until the channel closes (the parent closed it, or died: EOF), or SIGTERM;
5. closes the worker and exits 0.

SIGINT is ignored: Ctrl-C on ``sanke serve`` reaches the whole process group, and the server
closes its workers itself.  The process name (``comm``, shown by ``ps -e`` and ``top``) is
``sanke-media-N``; the command line shows ``-m media.worker_process --index N``.

``--spare``: the pool's idle spare (``sanke-spare``).  When it takes a dead worker's slot the
pool sends ``worker.adopt`` ``{index}``: the process renames itself ``sanke-media-N``, moves to the
slot's core (with ``--pin``) and logs as ``media-worker[N]``.

:func:`run_worker` is the same code the pool runs in-process (``SANKE_MEDIA_WORKERS=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import ctypes.util
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from media import eventloop, ice
from media.channel import Channel, ChannelError, open_channel
from media.ice import IcePolicy

ADOPT_METHOD = "worker.adopt"
"""A spare taking a slot (the pool's request; see the module docstring)."""

log = logging.getLogger("media.worker_process")  # also when run as __main__

DEFAULT_WORKER_CLASS = "media.worker:Worker"
ICE_ENV = "SANKE_MEDIA_WORKER_ICE_JSON"
READY_EVENT = "worker.ready"
"""Sent once by the worker process after the worker object exists; consumed by the pool."""

POLICY_KEYS = ("ice_servers", "ice_host_addresses", "ice_allowed_networks", "ice_announced_address")


class WorkerClassMissing(ImportError):
    """The module named by the worker class does not exist (not: it exists but fails to import)."""


def load_worker_class(spec: str) -> type:
    """``"package.module:Class"`` -> the class. Import errors inside the module propagate."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"worker class must look like 'package.module:Class', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise WorkerClassMissing(f"worker module {module_name} not found", name=module_name) from exc
        raise
    try:
        return getattr(module, class_name)  # type: ignore[no-any-return]
    except AttributeError:
        raise ImportError(f"{module_name} has no {class_name}") from None


def policy_from_strings(strings: Mapping[str, str | None]) -> IcePolicy:
    """The ICE policy from the settings' strings (keys as in :data:`POLICY_KEYS`)."""
    unknown = set(strings) - set(POLICY_KEYS)
    if unknown:
        raise ValueError(f"unknown ICE setting(s): {', '.join(sorted(unknown))}")
    return IcePolicy.from_strings(*(strings.get(key) for key in POLICY_KEYS))


async def run_worker(
    sock: socket.socket,
    *,
    index: int,
    policy: IcePolicy,
    worker_class: type,
    stop: asyncio.Event | None = None,
    on_adopt: Callable[[int], None] | None = None,
) -> None:
    """Serve one worker over ``sock`` until the channel closes (or ``stop`` is set), then close it.

    ``on_adopt(index)``: this (spare) worker now serves slot ``index`` (``worker.adopt``)."""
    closed = asyncio.Event()
    channel: Channel = await open_channel(sock, on_close=closed.set, name=f"media-worker-{index}")
    worker = worker_class(policy=policy, emit=channel.notify)

    async def handle(method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == ADOPT_METHOD:
            slot = params.get("index")
            if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
                raise ChannelError("bad_request", "worker.adopt needs an index >= 0")
            channel.name = f"media-worker-{slot}"
            if on_adopt is not None:
                on_adopt(slot)
            return {}
        return await worker.handle(method, params)  # type: ignore[no-any-return]

    channel.handler = handle
    channel.start()
    channel.notify(READY_EVENT, {"index": index, "pid": os.getpid()})
    waits = [asyncio.ensure_future(closed.wait())]
    if stop is not None:
        waits.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
        await channel.close()
        try:
            await worker.close()
        except Exception:  # noqa: BLE001 - still let the process end cleanly
            log.exception("worker %d: close failed", index)


def _set_process_name(name: str) -> None:
    """Set ``comm`` (ps -e, top) on Linux; silently nothing elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_name = 15
        libc.prctl(pr_set_name, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


_ALLOWED: set[int] = set()
"""The CPU cores this process was allowed at start."""


def _log_format(label: str) -> str:
    return f"%(asctime)s %(levelname)s media-worker[{label}] %(name)s: %(message)s"


def _take_slot(index: int, pin: bool) -> None:
    """Name, core and log prefix of slot ``index`` (at start, or when a spare is adopted)."""
    _set_process_name(f"sanke-media-{index}")
    if pin:
        cores = sorted(_ALLOWED or os.sched_getaffinity(0))  # as allowed at start, before any pinning
        os.sched_setaffinity(0, {cores[index % len(cores)]})
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(_log_format(str(index))))


async def _main(args: argparse.Namespace, policy: IcePolicy, worker_class: type) -> None:
    sock = socket.socket(fileno=args.fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def adopt(index: int) -> None:
        _take_slot(index, args.pin)
        log.info("spare worker (pid %d) now serves slot %d", os.getpid(), index)

    await run_worker(sock, index=args.index, policy=policy, worker_class=worker_class, stop=stop, on_adopt=adopt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media.worker_process", description="SanKe media worker")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket carrying the channel")
    parser.add_argument("--index", type=int, default=0, help="worker slot, for logs and the process name")
    parser.add_argument("--ice-json", default=None,
                        help=f"ICE settings as a JSON object (default: ${ICE_ENV})")
    parser.add_argument("--worker-class", default=DEFAULT_WORKER_CLASS)
    parser.add_argument("--pin", action="store_true", help="run on one CPU core (slot i on the i-th allowed core)")
    parser.add_argument("--spare", action="store_true", help="an idle spare until the pool gives it a slot")
    parser.add_argument("--log-level", default=os.environ.get("SANKE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The forwarding loop allocates few containers, but aiortc and asyncio do: with the default
    # gen-0 threshold (700) the collector runs many times a second and each run stalls every
    # packet in flight.  Collect young objects less often; everything from start-up is frozen.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    _ALLOWED.update(os.sched_getaffinity(0))
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format=_log_format(str(args.index)))
    if args.spare:
        _set_process_name("sanke-spare")
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(_log_format("spare")))
    else:
        _take_slot(args.index, args.pin)
    # aioice logs every connectivity check at INFO: one line per candidate pair per participant
    logging.getLogger("aioice").setLevel(max(logging.WARNING, logging.getLogger().level))

    raw = args.ice_json if args.ice_json is not None else os.environ.get(ICE_ENV, "{}")
    try:
        strings: Any = json.loads(raw or "{}")
        if not isinstance(strings, dict):
            raise ValueError("ICE settings must be a JSON object")
        policy = policy_from_strings(strings)
        worker_class = load_worker_class(args.worker_class)
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return 2
    except ImportError:
        log.exception("cannot start: worker class %s", args.worker_class)
        return 2
    ice.apply(policy)
    eventloop.run(_main(args, policy, worker_class))
    log.info("worker %d (pid %d) stopped", args.index, os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
