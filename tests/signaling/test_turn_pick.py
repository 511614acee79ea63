"""Which TURN server the Python lesson client gives aiortc (``signaling.turn_pick``), on 127.0.0.1 only.

aiortc uses one TURN server: the client puts the first one that answers from where it is in front.
(The firewalled classroom with a real coturn: ``tests/turn/test_firewalled_school.py``.)
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aioice import stun
from aiortc import RTCIceServer

from signaling import turn_pick

HANDED_OUT = [{"urls": ["stun:127.0.0.1:3478"], "username": None, "credential": None},
              {"urls": ["turn:127.0.0.1:1?transport=udp", "turn:127.0.0.1:2?transport=tcp"],
               "username": "1790021600:42", "credential": "c"}]


def _closed_port(kind: int) -> int:
    """A port on 127.0.0.1 nothing listens on (bound and released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StunAnswerer(asyncio.DatagramProtocol):
    """A STUN server that answers Binding requests (as coturn does on its TURN port)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.asked = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = stun.parse_message(data)
        self.asked += 1
        answer = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                              transaction_id=request.transaction_id)
        answer.attributes["XOR-MAPPED-ADDRESS"] = addr
        self.transport.sendto(bytes(answer), addr)


def test_the_handed_out_servers_become_one_entry_per_url_after_the_clients_own() -> None:
    own = RTCIceServer(urls="stun:127.0.0.9:3478")
    servers = turn_pick.ice_servers(HANDED_OUT, [own])
    assert [s.urls for s in servers] == ["stun:127.0.0.9:3478", "stun:127.0.0.1:3478",
                                         "turn:127.0.0.1:1?transport=udp", "turn:127.0.0.1:2?transport=tcp"]
    assert [(s.username, s.credential) for s in servers[2:]] == [("1790021600:42", "c")] * 2
    assert turn_pick.configuration([]).iceServers == []  # never aiortc's public default


def test_the_turn_server_that_answers_goes_first() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        udp, answerer = await loop.create_datagram_endpoint(StunAnswerer, local_addr=("127.0.0.1", 0))
        listening = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        try:
            udp_port = udp.get_extra_info("sockname")[1]
            tcp_port = listening.sockets[0].getsockname()[1]
            stun_server = RTCIceServer(urls="stun:127.0.0.1:3478")
            dead_udp = RTCIceServer(urls=f"turn:127.0.0.1:{_closed_port(socket.SOCK_DGRAM)}?transport=udp",
                                    username="u", credential="c")
            dead_tcp = RTCIceServer(urls=f"turn:127.0.0.1:{_closed_port(socket.SOCK_STREAM)}?transport=tcp",
                                    username="u", credential="c")
            live_udp = RTCIceServer(urls=f"turn:127.0.0.1:{udp_port}?transport=udp", username="u", credential="c")
            live_tcp = RTCIceServer(urls=f"turns:127.0.0.1:{tcp_port}?transport=tcp", username="u", credential="c")

            # UDP refused, TCP answers: the TCP one first, the STUN server keeps its place
            got = await turn_pick.reachable_first([stun_server, dead_udp, live_tcp], timeout=1.0)
            assert got == [live_tcp, stun_server, dead_udp]
            # both answer: the server's order stands
            got = await turn_pick.reachable_first([live_udp, live_tcp], timeout=1.0)
            assert got == [live_udp, live_tcp] and answerer.asked >= 1
            # none answers: unchanged (aiortc tries the first, as before)
            started = loop.time()
            got = await turn_pick.reachable_first([dead_udp, dead_tcp, stun_server], timeout=0.5)
            assert got == [dead_udp, dead_tcp, stun_server]
            assert loop.time() - started < 2.0  # probed at once, each within the timeout
            # one TURN server: nothing to choose, nothing probed
            asked = answerer.asked
            assert await turn_pick.reachable_first([live_udp, stun_server]) == [live_udp, stun_server]
            assert answerer.asked == asked
        finally:
            udp.close()
            listening.close()
            await listening.wait_closed()

    asyncio.run(asyncio.wait_for(scenario(), 20))
