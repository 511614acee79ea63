"""``server.core.tasks.cancel_and_wait``: a background task is stopped and finished before the caller goes on."""

from __future__ import annotations

import asyncio

import pytest

from server.core.tasks import cancel_and_wait


def test_a_running_task_is_cancelled_and_has_finished_when_it_returns() -> None:
    async def scenario() -> None:
        cleaned: list[str] = []

        async def loop() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.01)  # its own clean-up takes a moment
                cleaned.append("done")

        task = asyncio.create_task(loop())
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        assert task.done() and task.cancelled() and cleaned == ["done"]
        await cancel_and_wait(task)  # again, and None: nothing happens
        await cancel_and_wait(None)

    asyncio.run(scenario())


def test_a_tasks_own_failure_still_reaches_the_caller() -> None:
    async def scenario() -> None:
        async def broken() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                raise ValueError("broken while stopping")

        task = asyncio.create_task(broken())
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="broken while stopping"):
            await cancel_and_wait(task)

    asyncio.run(scenario())
