"""A stand-in for ``media.worker.Worker`` with the same interface, for channel and pool tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from media.channel import ChannelError
from media.ice import IcePolicy


class FakeWorker:
    def __init__(self, *, policy: IcePolicy, emit: Callable[[str, dict], None]) -> None:
        self.policy = policy
        self.emit = emit
        self.routers: set[str] = set()

    async def handle(self, method: str, params: dict) -> dict:
        if method == "router.create":
            self.routers.add(params["routerId"])
            self.emit("router.created", {"routerId": params["routerId"], "pid": os.getpid()})
            return {"routerId": params["routerId"], "pid": os.getpid()}
        if method == "echo":
            return {"params": params, "pid": os.getpid()}
        if method == "sleep":
            await asyncio.sleep(params["seconds"])
            return {"slept": params["seconds"]}
        if method == "refuse":
            raise ChannelError(params.get("code", "refused"), "请求被拒绝")
        if method == "crash":
            raise RuntimeError("boom")
        if method == "policy":
            return {"host_addresses": list(self.policy.host_addresses or []),
                    "servers": [list(s.urls) for s in self.policy.ice_servers]}
        raise ChannelError("unknown_method", method)

    async def close(self) -> None:
        self.routers.clear()

    def load(self) -> int:
        return len(self.routers)


class FailingWorker(FakeWorker):
    """Cannot be created: the worker process ends before it is ready."""

    def __init__(self, *, policy: IcePolicy, emit: Callable[[str, dict], None]) -> None:
        raise RuntimeError("this worker cannot start")
