"""Stopping the server's own background tasks (the lifecycle loop, the recovery loop, the Redis
bus listener, the node heartbeat, the recordings' clean-up, the webhook worker): cancel one and wait
until it has finished.

It owns that one step and nothing else: it starts no task, logs nothing and keeps no state.
A task's own failure (an exception other than its cancellation) still reaches the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing to do) and wait until it has finished; its ``CancelledError``
    ends here, any other exception it raised is raised again."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
