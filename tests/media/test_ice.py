"""ICE policy: settings strings, aiortc/browser configuration, SDP filtering, aioice patches.

Network rule: nothing here sends a packet to a non-loopback address.  The end-to-end test
runs two aiortc peers on 127.0.0.1 under ``IcePolicy.loopback()``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from types import SimpleNamespace

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from media import ice
from media.ice import (
    IcePolicy,
    IceServer,
    SdpRejected,
    browser_ice_servers,
    check_remote_sdp,
    filter_local_sdp,
    rtc_configuration,
)


@pytest.fixture(autouse=True)
def _restore_aioice() -> Iterator[None]:
    original_gather = aioice.ice.get_host_addresses
    original_received = aioice.ice.StunProtocol.datagram_received
    yield
    ice.reset()
    assert aioice.ice.get_host_addresses is original_gather
    assert aioice.ice.StunProtocol.datagram_received is original_received


# ---------------------------------------------------------------------- SDP samples

_HEAD = (
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS\r\n"
)

_VIDEO = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "{candidates}"
    "a=ice-ufrag:Xk2r\r\n"
    "a=ice-pwd:q4cB0w9uMNWf7TqVqg3xYTz1\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=recvonly\r\n"
    "a=rtcp-mux\r\n"
    "a=rtcp-rsize\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtcp-fb:96 nack\r\n"
    "a=rtcp-fb:96 nack pli\r\n"
    "a=rtpmap:97 rtx/90000\r\n"
    "a=fmtp:97 apt=96\r\n"
)

_DATA = (
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "{candidates}"
    "a=ice-ufrag:Xk2r\r\n"
    "a=ice-pwd:q4cB0w9uMNWf7TqVqg3xYTz1\r\n"
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
    "a=setup:actpass\r\n"
    "a=mid:1\r\n"
    "a=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
)

LOOPBACK = "a=candidate:1 1 udp 2113937151 127.0.0.1 50001 typ host generation 0 network-cost 999\r\n"
LAN = "a=candidate:2 1 udp 2113939711 192.168.1.23 50002 typ host generation 0 network-id 1\r\n"
IPV6 = "a=candidate:3 1 udp 2113939455 2001:db8::23 50003 typ host generation 0 network-id 2\r\n"
MDNS = "a=candidate:4 1 udp 2113937151 3f1c9a6e-2b7d-4c1e-9a55-0c8f6f0e7d21.local 50004 typ host generation 0\r\n"
SRFLX = (
    "a=candidate:5 1 udp 1677729535 203.0.113.7 61000 typ srflx raddr 192.168.1.23 rport 50002 "
    "generation 0 network-cost 999\r\n"
)
LOOPBACK_V6 = "a=candidate:6 1 udp 2113937150 ::1 50006 typ host generation 0\r\n"
ALL = LOOPBACK + LAN + IPV6 + MDNS + SRFLX


def offer(video: str = LOOPBACK, data: str = "") -> str:
    return _HEAD + _VIDEO.format(candidates=video) + _DATA.format(candidates=data)


def candidates(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


# ---------------------------------------------------------------------- settings strings


def test_empty_settings_give_aioice_defaults_and_no_servers() -> None:
    policy = IcePolicy.from_strings(None, "", "  ", None)
    assert policy == IcePolicy()
    assert policy.ice_servers == ()
    assert policy.host_addresses is None
    assert policy.allowed_networks is None
    assert policy.announced_address is None


def test_settings_strings_are_parsed() -> None:
    policy = IcePolicy.from_strings(
        ice_servers="stun:stun.example.org:3478, turn:alice:s3cr:et@turn.example.org:3478?transport=udp",
        host_addresses="127.0.0.1, ::1",
        allowed_networks="127.0.0.0/8,::1/128,10.1.2.3/16",
        announced_address=" 198.51.100.4 ",
    )
    assert policy.ice_servers == (
        IceServer(urls=("stun:stun.example.org:3478",)),
        IceServer(
            urls=("turn:turn.example.org:3478?transport=udp",),
            username="alice",
            credential="s3cr:et",
        ),
    )
    assert policy.host_addresses == ("127.0.0.1", "::1")
    assert policy.allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.1.0.0/16"),
    )
    assert policy.announced_address == "198.51.100.4"


def test_ice_servers_can_be_given_as_json() -> None:
    policy = IcePolicy.from_strings(
        ice_servers='[{"urls": ["turn:turn.example.org?transport=tcp", "turns:turn.example.org:5349"],'
        ' "username": "bob", "credential": "p,w"}]'
    )
    assert policy.ice_servers == (
        IceServer(
            urls=("turn:turn.example.org?transport=tcp", "turns:turn.example.org:5349"),
            username="bob",
            credential="p,w",
        ),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ice_servers": "http://stun.example.org"}, "must start with stun:"),
        ({"ice_servers": "stun.example.org:3478"}, "must start with stun:"),
        ({"ice_servers": "stun:stun.example.org:notaport"}, "malformed"),
        ({"ice_servers": "stun:a.example.org,,stun:b.example.org"}, "empty entry"),
        ({"ice_servers": '[{"urls": "turn:turn.example.org:3478", "username": "alice"}]'},
         "needs a username and a credential"),
        ({"ice_servers": "turn:alice@turn.example.org"}, "user:password@host"),
        ({"ice_servers": "stun:alice:pw@stun.example.org"}, "only TURN servers take credentials"),
        ({"ice_servers": "[{"}, "not valid JSON"),
        ({"ice_servers": '[{"username": "x"}]'}, "'urls'"),
        ({"host_addresses": "localhost"}, "not an IPv4 or IPv6 address"),
        ({"host_addresses": "127.0.0.1,"}, "empty entry"),
        ({"allowed_networks": "127.0.0.0/33"}, "is not a network"),
        ({"allowed_networks": "loopback"}, "is not a network"),
        ({"announced_address": "sanke.example.org"}, "SANKE_ICE_ANNOUNCED_ADDRESS"),
        (
            {"host_addresses": "192.168.1.5", "allowed_networks": "127.0.0.0/8"},
            "outside the allowed networks",
        ),
    ],
)
def test_bad_settings_strings_are_refused_with_a_clear_message(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IcePolicy.from_strings(**kwargs)


def test_loopback_policy_gathers_on_127_0_0_1_and_allows_only_loopback() -> None:
    policy = IcePolicy.loopback()
    assert policy.ice_servers == ()
    assert policy.host_addresses == ("127.0.0.1",)
    assert policy.address_allowed("127.0.0.1")
    assert policy.address_allowed("127.8.9.10")
    assert policy.address_allowed("::1")
    assert not policy.address_allowed("192.168.1.23")
    assert not policy.address_allowed("2001:db8::23")
    assert not policy.address_allowed("x.local")
    assert not policy.address_allowed("8.8.8.8")


# ---------------------------------------------------------------------- configuration


def test_rtc_configuration_never_falls_back_to_the_public_google_stun_server() -> None:
    config = rtc_configuration(IcePolicy.loopback())
    assert config.iceServers == []
    assert "google" not in repr(config)

    assert _gatherer_servers(config) == (None, None)


def _gatherer_servers(config: object) -> tuple[object, object]:
    """The STUN and TURN server aioice would use; nothing is gathered, nothing is sent."""

    async def build() -> tuple[object, object]:
        pc = RTCPeerConnection(configuration=config)  # type: ignore[arg-type]
        try:
            pc.createDataChannel("probe")
            connection = pc.sctp.transport.transport.iceGatherer._connection
            return connection.stun_server, connection.turn_server
        finally:
            await pc.close()

    return asyncio.run(build())


def test_rtc_configuration_carries_the_configured_servers() -> None:
    policy = IcePolicy.from_strings(
        ice_servers="stun:stun.example.org,turn:alice:pw@turn.example.org:3478?transport=udp"
    )
    config = rtc_configuration(policy)
    assert [s.urls for s in config.iceServers] == [
        ["stun:stun.example.org"],
        ["turn:turn.example.org:3478?transport=udp"],
    ]
    assert config.iceServers[1].username == "alice"
    assert config.iceServers[1].credential == "pw"
    assert "stun.l.google.com" not in repr(config)
    assert _gatherer_servers(config) == (("stun.example.org", 3478), ("turn.example.org", 3478))


def test_browsers_get_urls_and_turn_credentials() -> None:
    policy = IcePolicy.from_strings(ice_servers="stun:stun.example.org,turn:alice:pw@turn.example.org")
    assert browser_ice_servers(policy) == [
        {"urls": ["stun:stun.example.org"]},
        {"urls": ["turn:turn.example.org"], "username": "alice", "credential": "pw"},
    ]
    assert browser_ice_servers(IcePolicy.loopback()) == []


# ---------------------------------------------------------------------- local SDP


def test_filter_local_sdp_keeps_only_loopback_candidates_under_the_loopback_policy() -> None:
    sdp = offer(video=ALL + LOOPBACK_V6, data=ALL)
    filtered = filter_local_sdp(sdp, IcePolicy.loopback())
    assert candidates(filtered) == ["127.0.0.1", "::1", "127.0.0.1"]
    assert filtered.endswith("\r\n")
    assert "\n" not in filtered.replace("\r\n", "")
    # everything that is not a candidate survives, in order
    other = [line for line in sdp.splitlines() if not line.startswith("a=candidate:")]
    assert [line for line in filtered.splitlines() if not line.startswith("a=candidate:")] == other


def test_filter_local_sdp_drops_mdns_names_even_without_restrictions() -> None:
    filtered = filter_local_sdp(offer(video=ALL), IcePolicy())
    assert candidates(filtered) == ["127.0.0.1", "192.168.1.23", "2001:db8::23", "203.0.113.7"]


def test_filter_local_sdp_announces_the_public_address_in_host_candidates() -> None:
    policy = IcePolicy.from_strings(announced_address="198.51.100.4")
    sdp = offer(video=LAN + SRFLX).replace("c=IN IP4 0.0.0.0", "c=IN IP4 192.168.1.23")
    filtered = filter_local_sdp(sdp, policy)
    assert candidates(filtered) == ["198.51.100.4", "203.0.113.7"]
    assert "a=candidate:2 1 udp 2113939711 198.51.100.4 50002 typ host generation 0 network-id 1" in filtered
    assert "c=IN IP4 198.51.100.4" in filtered
    assert "192.168.1.23 50002" not in filtered
    # the srflx candidate and its related address are left alone
    assert SRFLX.rstrip("\r\n") in filtered


# ---------------------------------------------------------------------- remote SDP


def test_check_remote_sdp_accepts_a_loopback_offer_unchanged() -> None:
    sdp = offer(video=LOOPBACK + LOOPBACK_V6, data=LOOPBACK)
    assert check_remote_sdp(sdp, IcePolicy.loopback()) is sdp


@pytest.mark.parametrize(
    ("candidate", "message"),
    [(LAN, "192.168.1.23"), (IPV6, "2001:db8::23"), (MDNS, "mDNS"), (SRFLX, "203.0.113.7")],
)
def test_check_remote_sdp_refuses_candidates_outside_loopback(candidate: str, message: str) -> None:
    with pytest.raises(SdpRejected, match=message):
        check_remote_sdp(offer(video=LOOPBACK + candidate), IcePolicy.loopback())


def test_check_remote_sdp_accepts_any_candidate_without_restrictions() -> None:
    sdp = offer(video=ALL)
    assert check_remote_sdp(sdp, IcePolicy()) == sdp


def test_check_remote_sdp_refuses_media_without_candidates_under_restrictions() -> None:
    # bundled: one section with candidates is enough for the group
    check_remote_sdp(offer(video=LOOPBACK, data=""), IcePolicy.loopback())
    # no candidate at all
    with pytest.raises(SdpRejected, match="没有可用的候选地址"):
        check_remote_sdp(offer(video="", data=""), IcePolicy.loopback())
    # not bundled: every section needs its own
    unbundled = offer(video=LOOPBACK, data="").replace("a=group:BUNDLE 0 1\r\n", "")
    with pytest.raises(SdpRejected, match="第 2 个媒体段"):
        check_remote_sdp(unbundled, IcePolicy.loopback())
    # a rejected section (port 0) needs none
    rejected = unbundled.replace("m=application 9 ", "m=application 0 ")
    assert check_remote_sdp(rejected, IcePolicy.loopback()) == rejected


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello world",
        "v=0\r\nm=video notaport UDP/TLS/RTP/SAVPF 96\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        offer().replace("m=video 9 UDP/TLS/RTP/SAVPF 96 97", "m=video 9 UDP/TLS/RTP/SAVPF 96 x"),
        offer().replace("a=setup:actpass", "a=setup:sideways"),
        offer().replace("127.0.0.1 50001 typ host", "127.0.0.1"),
    ],
)
@pytest.mark.parametrize("policy", [IcePolicy(), IcePolicy.loopback()], ids=["open", "loopback"])
def test_check_remote_sdp_rejects_text_that_is_not_sdp(garbage: str, policy: IcePolicy) -> None:
    with pytest.raises(SdpRejected, match="SDP"):
        check_remote_sdp(garbage, policy)


def test_sdp_rejected_is_a_value_error() -> None:
    assert issubclass(SdpRejected, ValueError)


# ---------------------------------------------------------------------- aioice patches


def test_apply_makes_aioice_gather_only_the_configured_addresses() -> None:
    original = aioice.ice.get_host_addresses
    ice.apply(IcePolicy.loopback())
    patched = aioice.ice.get_host_addresses
    assert patched(True, True) == ["127.0.0.1"]
    assert patched(False, True) == []
    # idempotent: a second apply keeps the same patch and switches the policy
    ice.apply(IcePolicy(host_addresses=("127.0.0.1", "::1")))
    assert aioice.ice.get_host_addresses is patched
    assert patched(True, True) == ["127.0.0.1", "::1"]
    assert ice.current_policy() == IcePolicy(host_addresses=("127.0.0.1", "::1"))
    ice.reset()
    assert aioice.ice.get_host_addresses is original
    assert ice.current_policy() is None


def test_apply_guards_datagrams_from_outside_the_allowed_networks() -> None:
    received: list[bytes] = []

    async def feed() -> None:
        receiver = SimpleNamespace(data_received=lambda data, component: received.append(data),
                                   _nominated={}, _check_list=[])
        protocol = aioice.ice.StunProtocol(receiver)
        protocol.local_candidate = SimpleNamespace(component=1)
        # (ICE is checking a pair with each of them: media.demux lets them in, the policy decides)
        receiver._check_list = [
            SimpleNamespace(protocol=protocol, remote_candidate=SimpleNamespace(_network_host=host, port=port))
            for host, port in (("192.168.1.23", 50002), ("2001:db8::23", 50003), ("127.0.0.1", 50001),
                               ("::1", 50006))]
        # not STUN: aioice hands it to the receiver (DTLS/RTP path)
        protocol.datagram_received(b"\x17not-stun-lan", ("192.168.1.23", 50002))
        protocol.datagram_received(b"\x17not-stun-ipv6", ("2001:db8::23", 50003, 0, 0))
        protocol.datagram_received(b"\x17not-stun-loop", ("127.0.0.1", 50001))
        protocol.datagram_received(b"\x17not-stun-loop6", ("::1", 50006, 0, 0))

    ice.apply(IcePolicy.loopback())
    asyncio.run(feed())
    assert received == [b"\x17not-stun-loop", b"\x17not-stun-loop6"]

    # an unrestricted policy lets everything through
    received.clear()
    ice.apply(IcePolicy())
    asyncio.run(feed())
    assert len(received) == 4


# ---------------------------------------------------------------------- end to end


async def _loopback_exchange(policy: IcePolicy) -> tuple[str, str, list[tuple[str, str]], str]:
    config = rtc_configuration(policy)
    caller = RTCPeerConnection(configuration=config)
    callee = RTCPeerConnection(configuration=config)
    try:
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        channel = caller.createDataChannel("chat")

        @channel.on("open")
        def _on_open() -> None:
            if not opened.done():
                opened.set_result(None)

        @callee.on("datachannel")
        def _on_datachannel(remote_channel) -> None:  # type: ignore[no-untyped-def]
            @remote_channel.on("message")
            def _on_message(message: str) -> None:
                if not got.done():
                    got.set_result(message)

        async def negotiate() -> tuple[str, str]:
            await caller.setLocalDescription(await caller.createOffer())
            offer_sdp = check_remote_sdp(filter_local_sdp(caller.localDescription.sdp, policy), policy)
            await callee.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await callee.setLocalDescription(await callee.createAnswer())
            answer_sdp = check_remote_sdp(filter_local_sdp(callee.localDescription.sdp, policy), policy)
            await caller.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
            await opened
            channel.send("你好，三课")
            await got
            while caller.connectionState != "connected" or callee.connectionState != "connected":
                await asyncio.sleep(0.01)
            return offer_sdp, answer_sdp

        offer_sdp, answer_sdp = await asyncio.wait_for(negotiate(), timeout=15)
        pairs = []
        for pc in (caller, callee):
            connection = pc.sctp.transport.transport._connection
            pair = connection._nominated[1]
            pairs.append((pair.local_candidate.host, pair.remote_candidate.host))
        return offer_sdp, answer_sdp, pairs, got.result()
    finally:
        await caller.close()
        await callee.close()


def test_two_aiortc_peers_connect_over_loopback_only() -> None:
    policy = IcePolicy.loopback()
    ice.apply(policy)
    offer_sdp, answer_sdp, pairs, message = asyncio.run(_loopback_exchange(policy))

    assert message == "你好，三课"
    assert candidates(offer_sdp) and set(candidates(offer_sdp)) == {"127.0.0.1"}
    assert candidates(answer_sdp) and set(candidates(answer_sdp)) == {"127.0.0.1"}
    assert pairs == [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "127.0.0.1")]
