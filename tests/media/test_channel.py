"""media.channel: framing, requests/responses by id, notifications, errors, closing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from media.channel import MAX_FRAME, Channel, ChannelClosed, ChannelError, open_socketpair_channels


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


async def pair(handler=None, on_event=None, client_events=None) -> tuple[Channel, Channel]:  # type: ignore[no-untyped-def]
    """(client, server): the server end answers requests with ``handler``."""
    client, server = await open_socketpair_channels(
        {"on_event": client_events, "name": "client"},
        {"handler": handler, "on_event": on_event, "name": "server"},
    )
    client.start()
    server.start()
    return client, server


async def echo(method: str, params: dict) -> dict:
    if method == "echo":
        return {"method": method, "params": params}
    if method == "sleep":
        await asyncio.sleep(params["seconds"])
        return {"slept": params["seconds"], "tag": params.get("tag")}
    if method == "refuse":
        raise ChannelError("not_allowed", "不允许")
    if method == "crash":
        raise RuntimeError("boom")
    if method == "none":
        return None  # type: ignore[return-value]
    if method == "big":
        return {"blob": "x" * (MAX_FRAME + 10)}
    raise ChannelError("unknown_method", method)


def raw_frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def test_request_response_round_trip_with_unicode():
    async def main() -> None:
        client, server = await pair(echo)
        result = await client.request("echo", {"name": "三课", "n": [1, 2.5, None]})
        assert result == {"method": "echo", "params": {"name": "三课", "n": [1, 2.5, None]}}
        assert await client.request("none", {}) == {}
        await client.close()
        await server.close()

    run(main)


def test_both_ends_can_send_requests():
    async def main() -> None:
        client, server = await pair(echo)
        client.handler = echo
        assert (await server.request("echo", {"from": "server"}))["params"] == {"from": "server"}
        assert (await client.request("echo", {"from": "client"}))["params"] == {"from": "client"}
        await client.close()

    run(main)


def test_error_response_carries_the_code_and_message():
    async def main() -> None:
        client, _ = await pair(echo)
        with pytest.raises(ChannelError) as info:
            await client.request("refuse", {})
        assert info.value.code == "not_allowed" and info.value.message == "不允许"
        with pytest.raises(ChannelError) as info:
            await client.request("nope", {})
        assert info.value.code == "unknown_method"
        await client.close()

    run(main)


def test_handler_exception_is_internal_and_the_channel_keeps_working(caplog):
    async def main() -> None:
        client, _ = await pair(echo)
        with pytest.raises(ChannelError) as info:
            await client.request("crash", {})
        assert info.value.code == "internal" and "boom" in info.value.message
        assert (await client.request("echo", {"after": 1}))["params"] == {"after": 1}
        await client.close()

    with caplog.at_level(logging.ERROR, logger="media.channel"):
        run(main)
    crash = [r for r in caplog.records if "crash" in r.getMessage()]
    assert crash and crash[0].exc_info is not None  # logged with its traceback


def test_concurrent_requests_resolve_by_id_out_of_order():
    async def main() -> None:
        client, _ = await pair(echo)
        finished: list[str] = []

        async def call(tag: str, seconds: float) -> dict:
            result = await client.request("sleep", {"seconds": seconds, "tag": tag})
            finished.append(tag)
            return result

        results = await asyncio.gather(call("slow", 0.3), call("mid", 0.15), call("fast", 0.0))
        assert [r["tag"] for r in results] == ["slow", "mid", "fast"]
        assert finished == ["fast", "mid", "slow"]  # a slow request did not hold up the others
        await client.close()

    run(main)


def test_a_notification_after_a_response_is_delivered_after_the_awaiting_code_resumes():
    async def main() -> None:
        log: list[str] = []
        server_end: list[Channel] = []

        async def handler(method: str, params: dict) -> dict:
            # Send the response and then an event about the created thing in the same loop turn.
            loop = asyncio.get_running_loop()
            loop.call_soon(server_end[0].notify, "thing.changed", {"id": params["id"]})
            return {"id": params["id"]}

        client, server = await pair(handler, client_events=lambda e, d: log.append(f"event {d['id']}"))
        server_end.append(server)
        for i in range(20):
            created = await client.request("create", {"id": i})
            log.append(f"created {created['id']}")  # registration right after the await
        async def all_in() -> None:  # the last event follows the last response: wait for it (busy machines)
            while len(log) < 40:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(all_in(), 10)
        expected = [entry for i in range(20) for entry in (f"created {i}", f"event {i}")]
        assert log == expected
        await client.close()

    run(main)


def test_notifications_keep_their_order_and_events_before_a_response_arrive_first():
    async def main() -> None:
        seen: list[Any] = []
        server_end: list[Channel] = []

        async def handler(method: str, params: dict) -> dict:
            for i in range(5):
                server_end[0].notify("tick", {"i": i})
            return {}

        client, server = await pair(handler, client_events=lambda e, d: seen.append((e, d["i"])))
        server_end.append(server)
        await client.request("go", {})
        seen.append("response")
        await asyncio.sleep(0.05)
        assert seen == [("tick", 0), ("tick", 1), ("tick", 2), ("tick", 3), ("tick", 4), "response"]
        await client.close()

    run(main)


def test_large_frames_pass_and_oversized_ones_are_refused():
    async def main() -> None:
        client, server = await pair(echo)
        blob = "字" * (1024 * 1024)  # 3 MiB of UTF-8, under the 4 MiB limit
        assert (await client.request("echo", {"blob": blob}))["params"]["blob"] == blob
        # Too big to send: refused before anything is written; the channel stays usable.
        with pytest.raises(ChannelError) as info:
            await client.request("echo", {"blob": "x" * MAX_FRAME})
        assert info.value.code == "frame_too_large" and not client.closed
        # A response too big to send becomes an error response.
        with pytest.raises(ChannelError) as info:
            await client.request("big", {})
        assert info.value.code == "frame_too_large"
        assert (await client.request("echo", {"ok": True}))["params"] == {"ok": True}
        await client.close()
        await server.close()

    run(main)


def test_an_oversized_incoming_frame_closes_the_channel():
    async def main() -> None:
        reader_end, raw = await open_socketpair_channels({"handler": echo}, None)
        closed = asyncio.Event()
        reader_end.on_close = closed.set
        reader_end.start()
        pending = asyncio.ensure_future(reader_end.request("anything", {}))
        await asyncio.sleep(0)
        raw._writer.write((MAX_FRAME + 1).to_bytes(4, "big") + b"{")
        await asyncio.wait_for(closed.wait(), 2)
        assert reader_end.closed
        with pytest.raises(ChannelClosed):
            await pending
        await raw.close()

    run(main)


def test_malformed_frames_are_logged_answered_when_they_have_an_id_and_do_not_kill_the_channel(caplog):
    async def main() -> None:
        channel, raw = await open_socketpair_channels({"handler": echo, "name": "victim"}, None)
        channel.start()
        writer, reader = raw._writer, raw._reader

        async def reply() -> dict:
            size = int.from_bytes(await reader.readexactly(4), "big")
            return json.loads(await reader.readexactly(size))

        writer.write(raw_frame(b"not json at all"))
        writer.write(raw_frame(b"\xff\xfe"))
        writer.write(raw_frame(b"[1, 2, 3]"))
        writer.write(raw_frame(b'{"event": 5, "data": {}}'))
        writer.write(raw_frame(b'{"id": 7, "method": "echo", "params": {"broken": '))  # bad JSON with an id
        assert await asyncio.wait_for(reply(), 2) == {
            "id": 7, "error": {"code": "bad_request", "message": "malformed frame (not UTF-8 JSON)"}}
        writer.write(raw_frame(b'{"id": 8, "params": {}, "method": 3}'))
        assert (await asyncio.wait_for(reply(), 2))["error"]["code"] == "bad_request"
        writer.write(raw_frame(b'{"id": 9, "method": "echo", "params": []}'))
        assert (await asyncio.wait_for(reply(), 2))["error"]["code"] == "bad_request"
        writer.write(raw_frame(b'{"id": 10, "what": "ever"}'))
        assert (await asyncio.wait_for(reply(), 2))["error"]["code"] == "bad_request"
        writer.write(raw_frame(b'{"id": 11, "method": "echo", "params": {"still": "alive"}}'))
        assert await asyncio.wait_for(reply(), 2) == {
            "id": 11, "result": {"method": "echo", "params": {"still": "alive"}}}
        assert not channel.closed
        await channel.close()
        await raw.close()

    with caplog.at_level(logging.ERROR, logger="media.channel"):
        run(main)
    assert sum("malformed" in r.getMessage() for r in caplog.records) >= 7


def test_a_malformed_response_fails_only_its_request():
    async def main() -> None:
        channel, raw = await open_socketpair_channels(None, None)
        channel.start()
        pending = asyncio.ensure_future(channel.request("x", {}))
        size = int.from_bytes(await raw._reader.readexactly(4), "big")
        request = json.loads(await raw._reader.readexactly(size))
        raw._writer.write(raw_frame(json.dumps({"id": request["id"], "error": "nope"}).encode()))
        with pytest.raises(ChannelError) as info:
            await pending
        assert info.value.code == "bad_response" and not channel.closed
        await channel.close()
        await raw.close()

    run(main)


def test_closing_rejects_pending_requests_and_later_ones():
    async def main() -> None:
        client, server = await pair(echo)
        closes: list[str] = []
        client.on_close = lambda: closes.append("client")
        server.on_close = lambda: closes.append("server")
        pending = [asyncio.ensure_future(client.request("sleep", {"seconds": 10})) for _ in range(3)]
        await asyncio.sleep(0.05)
        await client.close()
        for future in pending:
            with pytest.raises(ChannelClosed):
                await future
        with pytest.raises(ChannelClosed):
            await client.request("echo", {})
        client.notify("ignored", {})  # no error after close
        await client.close()  # idempotent
        for _ in range(100):
            if server.closed:
                break
            await asyncio.sleep(0.01)
        assert server.closed and sorted(closes) == ["client", "server"]

    run(main)


def test_the_other_end_going_away_rejects_pending_requests():
    async def main() -> None:
        client, server = await pair(echo)
        pending = asyncio.ensure_future(client.request("sleep", {"seconds": 10}))
        await asyncio.sleep(0.05)
        await server.close()
        with pytest.raises(ChannelClosed):
            await pending
        assert client.closed

    run(main)


def test_a_request_times_out_and_a_late_response_is_dropped():
    async def main() -> None:
        client, _ = await pair(echo)
        with pytest.raises(TimeoutError):
            await client.request("sleep", {"seconds": 0.2}, timeout=0.05)
        await asyncio.sleep(0.3)  # the late response arrives and is ignored
        assert (await client.request("echo", {"x": 1}))["params"] == {"x": 1}
        await client.close()

    run(main)


def test_requests_to_an_end_without_handler_are_refused():
    async def main() -> None:
        client, server = await pair(echo)
        with pytest.raises(ChannelError) as info:
            await server.request("echo", {})
        assert info.value.code == "unsupported"
        await client.close()

    run(main)


def test_a_failing_event_listener_does_not_kill_the_channel():
    async def main() -> None:
        def listener(event: str, data: dict) -> None:
            raise ValueError("listener bug")

        client, server = await pair(echo, client_events=listener)
        server.notify("x", {})
        await asyncio.sleep(0.05)
        assert (await client.request("echo", {}))["params"] == {}
        await client.close()

    run(main)
