"""Waiting on state with a deadline, for tests: poll a check until it holds, fail naming what did not.

Never sleep-and-count: a test waits for what it needs and fails after a bound it states.  ``wait_until``
blocks the thread (a test driving a process or a browser), ``until`` awaits (a test on an event loop).
Both answer the check's first true value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

What = str | Callable[[], str]
"""What is awaited, as the failure says it (a callable is called at the failure, to show the state then)."""


class _Poll:
    """One wait: ``ready()`` asks ``check()`` once; true → ``value`` holds it; past the deadline → fails."""

    def __init__(self, what: What, check: Callable[[], Any], timeout: float,
                 ignoring: tuple[type[BaseException], ...] = ()) -> None:
        self.what, self.check, self.timeout, self.ignoring = what, check, timeout, ignoring
        self.deadline = time.monotonic() + timeout
        self.value: Any = None

    def ready(self) -> bool:
        try:
            self.value = self.check()
        except self.ignoring as exc:  # (a server still starting or restarting: not yet)
            self.value = exc
        if self.value and not isinstance(self.value, BaseException):
            return True
        if time.monotonic() > self.deadline:
            what = self.what() if callable(self.what) else self.what
            raise AssertionError(f"not within {self.timeout} s: {what} (last: {self.value!r})")
        return False


def wait_until(what: What, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1,
               ignoring: tuple[type[BaseException], ...] = ()) -> Any:
    """``check()`` every ``interval`` s until it is true (answered), at most ``timeout`` s; exceptions of the
    ``ignoring`` types count as "not yet"."""
    poll = _Poll(what, check, timeout, ignoring)
    while not poll.ready():
        time.sleep(interval)
    return poll.value


async def until(what: What, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """``check()`` every ``interval`` s until it is true (answered), at most ``timeout`` s, not blocking the loop."""
    poll = _Poll(what, check, timeout)
    while not poll.ready():
        await asyncio.sleep(interval)
    return poll.value
