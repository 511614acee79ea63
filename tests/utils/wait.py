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


def _failed(what: str, timeout: float, last: Any) -> AssertionError:
    return AssertionError(f"not within {timeout} s: {what} (last: {last!r})")


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """``check()`` every ``interval`` s until it is true (answered), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failed(what, timeout, value)
        time.sleep(interval)


async def until(what: str, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """``check()`` every ``interval`` s until it is true (answered), at most ``timeout`` s, not blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failed(what, timeout, value)
        await asyncio.sleep(interval)
