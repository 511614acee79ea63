"""LL-HLS blocking playlist reloads and blocking preload-hint requests (RFC 8216bis 6.2.5.2, 6.2.6).

A client asks ``index.m3u8?_HLS_msn=M&_HLS_part=P``: the answer waits until the playlist holds part P of
segment M (or later), then is that playlist; the client asks for the part its playlist hints
(``EXT-X-PRELOAD-HINT``) before it is written: the answer waits until it is.  Both are bounded by three
target durations (then 503, as the spec says), and a playlist with ``EXT-X-ENDLIST`` answers at once.

- ``PlaylistState`` / ``parse``: what of a media playlist the waits need (media sequence, segments,
  parts after the last segment, the hint, the end), parsed once per change of the file.
- ``decide``: the spec's rules as a pure function of a state and the request (ready, wait, too far).
- ``Watchers``: one ``Watcher`` per playlist file that someone waits on.  It polls the file's identity
  (``os.stat``: the writer replaces the file, so the inode changes) every ``POLL_S`` while it has waiters,
  reads and parses a changed file once, and wakes exactly the waiters the new state satisfies: thousands
  of viewers waiting on one playlist cost one ``stat`` per tick between them, not one each.  It stops
  polling, and forgets itself, when nobody waits.

No FastAPI, no files other than the playlists it is asked about.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 0.025
"""How often a watched playlist's identity is checked while someone waits on it."""
DEFAULT_TARGET_S = 2.0
"""The target duration assumed before a playlist says its own."""
_ATTR_URI = re.compile(r'URI="([^"]*)"')
_ATTR_PART_TARGET = re.compile(r"PART-TARGET=([0-9.]+)")


@dataclass(frozen=True)
class PlaylistState:
    """A media playlist as far as blocking requests are concerned."""

    text: bytes
    """The playlist as read: what a request it satisfied is answered with."""
    media_sequence: int
    segments: int
    """Full segments listed (``EXTINF``); the last has number ``media_sequence + segments - 1``."""
    target_s: float
    part_target_s: float | None
    last_segment_parts: int
    """Parts listed for the last full segment (0: none listed)."""
    live_parts: int
    """Parts listed after the last full segment: those of the segment being written."""
    preload_hint: str | None
    """The URI of the part the playlist hints (``EXT-X-PRELOAD-HINT:TYPE=PART``)."""
    ended: bool

    @property
    def last_msn(self) -> int:
        """The number of the last full segment (one less than the first when there is none)."""
        return self.media_sequence + self.segments - 1

    @property
    def advance_part_limit(self) -> int:
        """How many parts beyond the last one a request may ask for (RFC 8216bis 6.2.5.2)."""
        if self.part_target_s and self.part_target_s < 1:
            return int(3 / self.part_target_s)
        return 3

    @property
    def wait_s(self) -> float:
        """How long a blocking request is held at most: three target durations."""
        return 3 * self.target_s


def parse(text: bytes) -> PlaylistState:
    """The state of a media playlist (lenient: what it does not understand it skips)."""
    media_sequence = segments = last_parts = live_parts = 0
    target, part_target, hint, ended = DEFAULT_TARGET_S, None, None, False
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            segments += 1
            last_parts, live_parts = live_parts, 0
        elif line.startswith("#EXT-X-PART:"):
            live_parts += 1
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            media_sequence = _int(line.split(":", 1)[1], 0)
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(_int(line.split(":", 1)[1], int(DEFAULT_TARGET_S)))
        elif line.startswith("#EXT-X-PART-INF:"):
            m = _ATTR_PART_TARGET.search(line)
            part_target = float(m.group(1)) if m else None
        elif line.startswith("#EXT-X-PRELOAD-HINT:") and "TYPE=PART" in line:
            m = _ATTR_URI.search(line)
            hint = m.group(1) if m else None
        elif line == "#EXT-X-ENDLIST":
            ended = True
    return PlaylistState(text, media_sequence, segments, target, part_target, last_parts, live_parts, hint, ended)


def read(path: Path) -> PlaylistState | None:
    """The state of the playlist file at ``path``; None when there is none."""
    try:
        return parse(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _int(value: str, default: int) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return default


class Decision(str, Enum):
    ready = "ready"
    wait = "wait"
    too_far = "too_far"
    """Further ahead than the spec lets a client ask: answered 400 at once."""


def decide(state: PlaylistState, msn: int, part: int | None) -> Decision:
    """Whether ``state`` answers a request for segment ``msn`` (part ``part``) or later."""
    if state.ended:
        return Decision.ready  # 6.2.5.2: the directives are ignored once the playlist has ended
    last, live = state.last_msn, state.last_msn + 1
    if msn > last + 2:
        return Decision.too_far
    if part is not None:
        if msn == live and part - (state.live_parts - 1) > state.advance_part_limit:
            return Decision.too_far
        if msn > live and part >= state.advance_part_limit:
            return Decision.too_far
    if msn < last:
        return Decision.ready  # a later segment is there (or it left the window: the whole playlist is sent)
    if msn == last:
        if part is None or part < state.last_segment_parts or state.last_segment_parts == 0:
            return Decision.ready
        return Decision.ready if state.live_parts > 0 else Decision.wait  # past its last part: part 0 of the next
    if msn == live and part is not None and part < state.live_parts:
        return Decision.ready
    return Decision.wait


class Watcher:
    """One playlist file and the requests waiting on it."""

    def __init__(self, path: Path, on_idle: Callable[[Watcher], None]) -> None:
        self.path = path
        self._identity: tuple[int, int, int] | None = None
        self._state: PlaylistState | None = None
        self._waiters: dict[asyncio.Future[PlaylistState], Callable[[PlaylistState], bool]] = {}
        self._task: asyncio.Task[None] | None = None
        self._on_idle = on_idle

    def current(self) -> PlaylistState | None:
        """The playlist as it is now (read again only if the file changed); None while it does not exist."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._identity = self._state = None
            return None
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        if identity != self._identity or self._state is None:
            try:
                text = self.path.read_bytes()
            except FileNotFoundError:
                return self._state
            self._identity, self._state = identity, parse(text)
        return self._state

    async def wait(self, ready: Callable[[PlaylistState], bool], timeout_s: float) -> PlaylistState | None:
        """The first state of the playlist for which ``ready`` holds (the current one if it does), or None
        after ``timeout_s``."""
        state = self.current()
        if state is not None and ready(state):
            return state
        fut: asyncio.Future[PlaylistState] = asyncio.get_running_loop().create_future()
        self._waiters[fut] = ready
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name=f"hls-watch {self.path}")
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(fut, None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def seen(self) -> PlaylistState | None:
        """The playlist as last read (what the waiters were last checked against)."""
        return self._state

    async def _poll(self) -> None:
        try:
            while self._waiters:
                await asyncio.sleep(POLL_S)
                before = self._state
                state = self.current()
                if state is None or state is before:
                    continue
                for fut, ready in list(self._waiters.items()):
                    if not fut.done() and ready(state):
                        fut.set_result(state)
        except Exception:  # a waiter then times out; the next wait starts polling again
            log.exception("watching %s failed", self.path)
        finally:
            self._task = None
            if not self._waiters:
                self._on_idle(self)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Watchers:
    """The watchers of one server, by playlist path."""

    def __init__(self) -> None:
        self._by_path: dict[Path, Watcher] = {}

    def current(self, path: Path) -> PlaylistState | None:
        """The playlist at ``path`` as it is now (through its watcher if it has one, without making one)."""
        watcher = self._by_path.get(path)
        return watcher.current() if watcher is not None else read(path)

    def get(self, path: Path) -> Watcher:
        """The watcher of ``path`` (made now if nobody watches it); it forgets itself once nobody waits."""
        watcher = self._by_path.get(path)
        if watcher is None:
            watcher = self._by_path[path] = Watcher(path, self._idle)
        return watcher

    def _idle(self, watcher: Watcher) -> None:
        if self._by_path.get(watcher.path) is watcher and not watcher.waiting:
            del self._by_path[watcher.path]

    def __len__(self) -> int:
        return len(self._by_path)

    async def close(self) -> None:
        for watcher in list(self._by_path.values()):
            await watcher.close()
        self._by_path.clear()
