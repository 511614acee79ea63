"""The session event log's durability: a SIGKILL loses at most the events of the last flush interval
(everything older is on disk, in order), and a graceful shutdown (SIGTERM) writes everything still
pending.  The server is a separate
process the test starts, kills and starts again, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.client import LessonClient
from tests.records.killable import POLICY, Server, prepare, rows


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    info = prepare(tmp_path)
    yield tmp_path, info


def events(data_dir: Path) -> list[tuple[Any, ...]]:
    return rows(data_dir, "SELECT id, kind, participant_id, role, data FROM session_event ORDER BY id")


async def chat_echoed(sender: LessonClient, text: str) -> None:
    """Send a chat and wait for the server's echo of *this* chat: the other classroom's previous
    chat may still be on its way to the sender, and taking it for the echo would let the next
    chat race this one."""
    waiting = asyncio.ensure_future(sender.next_message("chat", where=lambda m: m.get("text") == text))
    await asyncio.sleep(0)  # the waiter is registered before the chat goes out
    await sender.send({"type": "chat", "text": text})
    await waiting


async def lesson_traffic(base: str, info: dict[str, Any], chats: int) -> tuple[str, str]:
    """Main and receiving join, the receiving classroom raises its hand, both chat; every message is
    answered (acknowledged) by the server before the next.  Returns their session ids."""
    main = LessonClient(base, info["lesson"], info["main"], policy=POLICY)
    recv = LessonClient(base, info["lesson"], info["recv"], policy=POLICY)
    await main.connect()
    await recv.connect()
    await recv.request({"type": "raise_hand", "raised": True})
    for i in range(chats):
        sender = main if i % 2 == 0 else recv
        await chat_echoed(sender, f"第{i}条")
    # the clients stay connected: the server goes down under them
    return main.participant_id, recv.participant_id


def chat_rows(data_dir: Path) -> list[str]:
    return [json.loads(d)["text"] for (d,) in rows(data_dir, "SELECT data FROM session_event WHERE kind = 'chat' ORDER BY id")]


FLUSH_S = 1.5
"""The flush interval of the killed server: a killed process loses at most the events of the last interval."""
WRITE_MARGIN_S = 0.5
"""Plus the time the last write itself took (one INSERT), and a late timer on a loaded machine."""


async def chat_until_killed(server: Server, info: dict[str, Any]) -> tuple[list[tuple[str, float, float]], float]:
    """Both classrooms chat without pause (each message echoed by the server before the next) while
    the database is watched; the server is killed (SIGKILL) between two flushes, once a chat sent
    after the last flush was echoed, so events are certainly still buffered.  Returns each chat's
    ``(text, sent, echoed)`` (monotonic times) and when the kill was sent."""
    main = LessonClient(server.base, info["lesson"], info["main"], policy=POLICY)
    recv = LessonClient(server.base, info["lesson"], info["recv"], policy=POLICY)
    await main.connect()
    await recv.connect()
    await recv.request({"type": "raise_hand", "raised": True})
    sent: list[tuple[str, float, float]] = []
    killed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def chat() -> None:
        i = 0
        while not killed.done():
            sender = main if i % 2 == 0 else recv
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(chat_echoed(sender, f"第{i}条"), 10)
            except (TimeoutError, ConnectionError):
                return  # killed meanwhile: this one was never acknowledged
            sent.append((f"第{i}条", t0, time.monotonic()))
            i += 1
            await asyncio.sleep(0.03)

    async def watch() -> None:
        seen, flushes = 0, 0
        unseen_since = time.monotonic()  # when the last poll that saw no new rows started
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            before = time.monotonic()
            rows = len(await asyncio.to_thread(chat_rows, server.data_dir))
            after = time.monotonic()
            if rows <= seen:
                unseen_since = before
                await asyncio.sleep(0.05)
                continue
            # a flush committed after `unseen_since` and took its rows before `after`; the writer then
            # waits a whole interval, so the next flush starts after `unseen_since + FLUSH_S`
            seen, flushes = rows, flushes + 1
            next_flush = unseen_since + FLUSH_S
            while flushes >= 2 and time.monotonic() < next_flush - 0.1:
                old_enough = sent and time.monotonic() - sent[0][2] > FLUSH_S + WRITE_MARGIN_S + 0.5
                late_enough = time.monotonic() > after + FLUSH_S / 2  # a good part of the interval is buffered
                # a chat sent after this flush was seen: only the next flush would write it
                if old_enough and late_enough and any(t_sent > after for _, t_sent, _ in sent):
                    t = time.monotonic()
                    assert server.proc is not None
                    server.proc.send_signal(signal.SIGKILL)
                    killed.set_result(t)
                    return
                await asyncio.sleep(0.01)
            unseen_since = before  # that poll did not see the next flush either
        killed.set_exception(AssertionError("no moment between two flushes to kill the server in 90 s"))

    talker = asyncio.ensure_future(chat())
    try:
        t_kill = await asyncio.wait_for(asyncio.gather(watch(), killed), 120)
    finally:
        talker.cancel()
        for c in (main, recv):
            try:
                await asyncio.wait_for(c.close(), 5)
            except Exception:  # noqa: BLE001 - the server is gone
                pass
    return sent, t_kill[1]


def test_a_sigkill_loses_at_most_the_last_flush_interval(server_dir) -> None:
    data_dir, info = server_dir
    server = Server(data_dir, flush_interval_s=FLUSH_S)
    server.start()
    try:
        sent, t_kill = asyncio.run(chat_until_killed(server, info))
        assert server.proc is not None and server.proc.wait(timeout=30) == -signal.SIGKILL
        on_disk = chat_rows(data_dir)
        texts = [text for text, _, _ in sent]
        assert on_disk == texts[: len(on_disk)]  # what survived is the oldest part, in order, without holes
        lost = sent[len(on_disk):]
        assert lost, "the kill came while chats were buffered: some must be lost"
        print(f"{len(sent)} chats echoed, {len(lost)} lost; the oldest lost echoed "
              f"{t_kill - lost[0][2]:.2f} s before the kill")
        bound = FLUSH_S + WRITE_MARGIN_S
        assert all(t_kill - echoed <= bound for _, _, echoed in lost), [
            (text, round(t_kill - echoed, 2)) for text, _, echoed in lost]
        older = [text for text, _, echoed in sent if t_kill - echoed > bound]
        assert older and set(older) <= set(on_disk)  # everything older than the bound survived
        kinds = {e[1] for e in events(data_dir)}
        assert {"join", "hand_raise"} <= kinds  # the lesson's first events were written long before

        before = events(data_dir)
        server.start()  # the server starts again on the same database, nothing written is lost or torn
        assert events(data_dir)[: len(before)] == before
        body = urllib.request.urlopen(server.base + "/healthz", timeout=5).read()
        assert b'"ok"' in body
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGTERM)


def test_a_graceful_shutdown_writes_every_pending_event(server_dir) -> None:
    data_dir, info = server_dir
    server = Server(data_dir, flush_interval_s=3600)  # the timer never fires: only the shutdown writes
    server.start()
    try:
        main_id, recv_id = asyncio.run(lesson_traffic(server.base, info, chats=12))
        time.sleep(0.5)
        assert events(data_dir) == []  # all still pending in the server
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is a clean exit here
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    finally:
        server.kill()
    rows = events(data_dir)
    chats = [r for r in rows if r[1] == "chat"]
    assert [r[2] for r in chats] == [main_id if i % 2 == 0 else recv_id for i in range(12)]
    assert [r for r in rows if r[1] == "join"] and ("hand_raise" in {r[1] for r in rows})
    assert {r[2] for r in rows if r[1] in ("disconnect", "leave")} == {main_id, recv_id}  # the shutdown's own events
