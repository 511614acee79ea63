"""Running a test's coroutine on asyncio's own loop and on uvloop's (the server's and the media
workers' loop): code that runs on both is tested on both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
"""Parametrises a test with the name of the loop to run on (its ``loop`` argument)."""


def run_on(loop: str, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario()`` to completion on a new loop of the kind ``loop`` names."""
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(scenario())
    else:
        asyncio.run(scenario())
