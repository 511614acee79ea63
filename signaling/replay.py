"""A session's replay buffer: its last messages with their ``seq``, for a resume.

Owns how they are kept: two deques side by side (the ``seq`` numbers, the messages), so a kept
message costs two deque slots and no object of its own.  A node keeps thousands of sessions with up
to ``size`` messages each; a ``(seq, message)`` pair per entry was one more object for the garbage
collector to scan in every full collection (millions of them once the buffers fill), and what a full
collection costs is the pause of the whole event loop.  The messages are the objects a broadcast gives
every session (``signaling.room.Participant.send``), never copies.

Must not: change a message, stamp ``seq`` on it, or deliver it (``signaling.room`` does).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any


class ReplayBuffer:
    """The last ``size`` messages of one session, in ``seq`` order."""

    __slots__ = ("_seqs", "_msgs", "forgotten_seq")

    def __init__(self, size: int) -> None:
        self._seqs: deque[int] = deque(maxlen=size)
        self._msgs: deque[Any] = deque(maxlen=size)
        self.forgotten_seq = 0
        """The highest ``seq`` that is not kept (pushed out, or never kept): a resume from an older
        ``last_seq`` cannot be replayed."""

    def append(self, seq: int, msg: Any) -> None:
        """Keep ``msg`` as ``seq`` (greater than every ``seq`` kept); the oldest goes when full."""
        if len(self._seqs) == self._seqs.maxlen:
            self.forgotten_seq = self._seqs[0]
        self._seqs.append(seq)
        self._msgs.append(msg)

    def skip(self, seq: int) -> None:
        """``seq`` went to the socket but is not kept (a message no resume needs, such as ``joined``): a
        resume from before it cannot be replayed."""
        self.forgotten_seq = max(self.forgotten_seq, seq)

    def can_replay(self, last_seq: int, seq: int) -> bool:
        """Every message after ``last_seq`` up to the session's ``seq`` is kept."""
        return self.forgotten_seq <= last_seq <= seq

    def after(self, last_seq: int) -> list[tuple[int, Any]]:
        """The kept messages after ``last_seq``, as ``(seq, message)``, oldest first."""
        return [(seq, m) for seq, m in zip(self._seqs, self._msgs) if seq > last_seq]

    def __len__(self) -> int:
        return len(self._seqs)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return zip(self._seqs, self._msgs)
