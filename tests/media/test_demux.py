"""The door of an ICE socket (``media.demux`` behind ``media.ice.apply``), on aioice's own objects.

A datagram the door admits ends up in the ICE connection's queue, which aiortc's DTLS transport
reads; one it drops never gets there.  What ICE itself must keep doing — answering checks from
any address, so a peer-reflexive address can be learnt — is checked on the wire: the response
aioice sends back.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from aioice import Candidate, Connection, stun
from aioice.ice import CandidatePair, StunProtocol

from media import demux, ice
from media.ice import IcePolicy
from tests.media.hostile import corpus

PEER = ("127.0.0.1", 40000)
SRTP = struct.pack("!BBHII", 0x80, 96, 1, 1, 0x1234) + b"\x00" * 40
DTLS = struct.pack("!BHH6sH", 23, 0xFEFD, 1, b"\x00" * 6, 20) + b"\x00" * 20


class Wire:
    """Stands for the socket's transport: what aioice sends back."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@pytest.fixture(params=[None, "127.0.0.0/8"], ids=["any-network", "loopback-only"])
def door(request: Any) -> Iterator[None]:
    ice.apply(IcePolicy.from_strings(None, "127.0.0.1", request.param, None))
    yield
    ice.reset()


def endpoint() -> tuple[Connection, StunProtocol, Wire, CandidatePair]:
    connection = Connection(ice_controlling=True, components=1)
    connection.remote_username, connection.remote_password = "peer", "p" * 22
    connection._early_checks_done = True  # (as once connect() has the remote password)
    protocol = StunProtocol(connection)
    protocol.local_candidate = Candidate(foundation="1", component=1, transport="udp", priority=1,
                                         host="127.0.0.1", port=50000, type="host")
    wire = Wire()
    protocol.transport = wire  # type: ignore[assignment]
    pair = CandidatePair(protocol, Candidate(foundation="2", component=1, transport="udp", priority=1,
                                             host=PEER[0], port=PEER[1], type="host"))
    return connection, protocol, wire, pair


def queued(connection: Connection) -> list[bytes]:
    out = []
    while not connection._queue.empty():
        item = connection._queue.get_nowait()
        assert item is not None
        out.append(item[0])
    return out


def check(connection: Connection, *, password: str | None = None) -> bytes:
    """A binding request from the peer, signed with our password (or ``password``)."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{connection.local_username}:peer"
    request.attributes["PRIORITY"] = 1234
    request.attributes["ICE-CONTROLLED"] = 1
    request.add_message_integrity((password or connection.local_password).encode())
    request.add_fingerprint()
    return bytes(request)


def test_dtls_and_media_come_only_from_the_selected_pair(door: None) -> None:
    async def scenario() -> None:
        connection, protocol, _, pair = endpoint()
        receive = protocol.datagram_received
        # ICE checking: only from a pair's remote address
        receive(DTLS, PEER)
        assert queued(connection) == []
        connection._check_list.append(pair)
        receive(DTLS, PEER)
        assert queued(connection) == [DTLS]
        # selected: from its remote address, on its socket
        connection._nominated[1] = pair
        for data, addr in ((DTLS, PEER), (SRTP, PEER), (DTLS, ("127.0.0.2", PEER[1])),
                           (SRTP, (PEER[0], PEER[1] + 1)), (SRTP, ("127.0.0.2", 5000))):
            receive(data, addr)
        assert queued(connection) == [DTLS, SRTP]
        other = StunProtocol(connection)
        other.local_candidate = protocol.local_candidate
        other.datagram_received(SRTP, PEER)  # the right address on another of our sockets
        assert queued(connection) == []
        assert demux.dropped(connection) == {"malformed": 0, "foreign": 5, "outside": 0}

    asyncio.run(scenario())


def test_nothing_malformed_gets_through_and_nothing_raises(door: None) -> None:
    async def scenario() -> None:
        connection, protocol, _, pair = endpoint()
        connection._check_list.append(pair)
        connection._nominated[1] = pair
        short = [b"", b"\x00", b"\x16" * 12, b"\x80" * 11, b"\x40" * 100, b"\xc8" * 100, b"\x05" * 100]
        for data in short:
            protocol.datagram_received(data, PEER)
        assert queued(connection) == []
        assert demux.dropped(connection)["malformed"] == len(short)
        hostile = corpus(random.Random(1))
        for data in hostile:
            protocol.datagram_received(data, ("127.0.0.2", 1234))  # raises nothing
        # from elsewhere, only what looks like STUN reaches aioice (which answers or ignores it; aiortc skips it)
        assert all(d[0] < 4 for d in queued(connection))
        for data in hostile:
            protocol.datagram_received(data, PEER)
        assert all(d[0] < 4 or (d[0] in range(20, 64) and len(d) >= 13) or (d[0] in range(128, 192) and len(d) >= 12)
                   for d in queued(connection))
    asyncio.run(scenario())


def test_checks_from_any_address_are_still_answered(door: None) -> None:
    """A peer whose address changed (a NAT rebinding, a new network) proves itself with a signed check:
    ICE answers it and learns the address (peer-reflexive); an unsigned one gets an error, no success."""

    async def scenario() -> None:
        connection, protocol, wire, pair = endpoint()
        connection._check_list.append(pair)
        connection._nominated[1] = pair
        moved = ("127.0.0.3", 41000)
        protocol.datagram_received(check(connection), moved)
        answers = [stun.parse_message(data) for data, addr in wire.sent if addr == moved]
        assert any(m.message_class == stun.Class.RESPONSE for m in answers), answers
        assert any(c.host == moved[0] and c.port == moved[1] and c.type == "prflx"
                   for c in connection._remote_candidates)
        wire.sent.clear()
        protocol.datagram_received(check(connection, password="x" * 22), ("127.0.0.4", 41000))
        answers = [stun.parse_message(data) for data, _ in wire.sent]
        assert [m.message_class for m in answers] == [stun.Class.ERROR]
        for task in [p.task for p in connection._check_list if p.task is not None]:
            task.cancel()

    asyncio.run(scenario())
