"""Which of the ICE servers a lesson hands out a Python client gives aiortc.

The server hands every client a list of STUN/TURN servers (``joined.ice_servers``, fresh
credentials in ``resumed.ice_servers``; ``docs/protocol.md``), typically coturn over UDP, TCP and
TLS on 443.  A browser tries all of them; aiortc gathers with one STUN and one TURN server only
(the first of each in its configuration).  So a client behind a firewall that lets out only TCP
would try TURN over UDP, get no relay candidate and no media.  This module finds out which TURN
servers answer at all from where the client is — a STUN Binding request over UDP, a TCP connection
for ``?transport=tcp`` and ``turns:`` — all at once with a short timeout, and puts the first that
answered (in the server's order) first.

It owns that choice and the building of the aiortc configuration from the list; it does not
gather, allocate or keep anything open, and never contacts an address that is not in the list.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from aioice import stun
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

PROBE_TIMEOUT_S = 1.5
"""How long a TURN server has to answer the probe (every server is probed at once)."""


def ice_servers(handed_out: Iterable[dict[str, Any]], own: Sequence[RTCIceServer] = ()) -> list[RTCIceServer]:
    """``own`` (the client's configured servers) then the servers of ``joined.ice_servers``, one
    :class:`RTCIceServer` per URL (so that the TURN servers can be reordered one by one)."""
    servers = list(own)
    for entry in handed_out:
        urls = entry.get("urls") or []
        for url in [urls] if isinstance(urls, str) else urls:
            servers.append(RTCIceServer(urls=url, username=entry.get("username"), credential=entry.get("credential")))
    return servers


def _turn_target(server: RTCIceServer) -> tuple[str, str, int] | None:
    """``(transport, host, port)`` of a TURN server aiortc can use (``udp`` or ``tcp``), or None."""
    url = server.urls if isinstance(server.urls, str) else server.urls[0]
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError:
        return None
    if parsed["scheme"] not in ("turn", "turns") or parsed["transport"] not in ("udp", "tcp"):
        return None
    if parsed["scheme"] == "turns" and parsed["transport"] != "tcp":
        return None
    return parsed["transport"], parsed["host"], int(parsed["port"])


class _StunAnswer(asyncio.DatagramProtocol):
    def __init__(self, transaction_id: bytes) -> None:
        self.transaction_id = transaction_id
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        with contextlib.suppress(ValueError):
            message = stun.parse_message(data)
            if message.transaction_id == self.transaction_id and not self.answered.done():
                self.answered.set_result(None)


async def _answers(transport: str, host: str, port: int) -> None:
    """Returns when the server answers a STUN Binding request (UDP) or accepts a TCP connection."""
    loop = asyncio.get_running_loop()
    if transport == "tcp":
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST,
                           transaction_id=secrets.token_bytes(12))
    udp, protocol = await loop.create_datagram_endpoint(lambda: _StunAnswer(request.transaction_id),
                                                        remote_addr=(host, port))
    try:
        while True:  # a datagram may be lost: ask again every 300 ms until the caller's timeout
            udp.sendto(bytes(request))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.answered), 0.3)
                return
    finally:
        udp.close()


async def _reachable(server: RTCIceServer, timeout: float) -> bool:
    target = _turn_target(server)
    if target is None:
        return False
    try:
        await asyncio.wait_for(_answers(*target), timeout)
        return True
    except (OSError, asyncio.TimeoutError):
        return False


async def reachable_first(servers: Sequence[RTCIceServer], timeout: float = PROBE_TIMEOUT_S) -> list[RTCIceServer]:
    """``servers`` with the first TURN server that answered moved in front of the other TURN servers
    (STUN servers keep their place); unchanged when there is at most one TURN server or none answered."""
    turn = [s for s in servers if _turn_target(s) is not None]
    if len(turn) < 2:
        return list(servers)
    answered = await asyncio.gather(*(_reachable(s, timeout) for s in turn))
    first = next((s for s, ok in zip(turn, answered) if ok), None)
    if first is None:
        return list(servers)
    return [first, *(s for s in servers if s is not first)]


def configuration(servers: Sequence[RTCIceServer]) -> RTCConfiguration:
    """aiortc's configuration; an explicit (possibly empty) list, never aiortc's public STUN default.

    ``max-bundle``, as the SFU's own connections (``media.ice.rtc_configuration``): aiortc's
    ``balanced`` default keeps a second audio m-line on a transport of its own, which a bundled
    offer never connects, so a client answering with it heard only the first microphone."""
    return RTCConfiguration(iceServers=list(servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
