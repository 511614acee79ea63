"""ICE policy: which STUN/TURN servers, which local addresses, which remote ones.

Everything here is configuration handed in from outside (``Settings``):

* ``ice_servers`` — STUN/TURN servers (for example coturn).  aiortc gets them in
  its :class:`aiortc.RTCConfiguration`, browsers get them in ``joined.ice_servers``.
  When there are none, aiortc is still given an explicit empty list, because
  ``RTCPeerConnection()`` without a configuration would use Google's public STUN
  server.  A TURN URL written without credentials is *minted*: each participant gets
  its own time-limited credentials from the shared secret (``turn``, see
  :mod:`media.turn`), and only browsers get it — the SFU has an address classrooms
  reach (relayed through TURN if their firewall wants), it never relays itself.
* ``host_addresses`` — the only local addresses aioice gathers host candidates on.
  aioice leaves 127.0.0.1 out by default, so tests set ``("127.0.0.1",)``.  A server
  that listens on a loopback address can only be reached from its own machine: unless
  told otherwise its media then gathers on loopback too (:func:`listen_defaults`).
* ``allowed_networks`` — when set, local candidates outside are dropped from the
  SDP we send, remote SDP with candidates outside (or mDNS ``.local`` names) is
  refused, and datagrams from sources outside are dropped before aioice sees them.
  Whatever the policy, every datagram passes :func:`media.demux.admit` first: empty,
  unknown or truncated ones, and DTLS or media from anyone but ICE's selected pair,
  never reach aioice or aiortc.
* ``announced_address`` — for a server behind NAT: the address written into our
  host candidates in place of the address the socket is bound to.

Network rule for tests and benchmarks: use :meth:`IcePolicy.loopback` — media
traffic then goes only to loopback addresses.

The SDP helpers are pure functions.  :func:`apply`/:func:`reset` patch aioice
process-wide (``aioice.ice.get_host_addresses`` and
``aioice.ice.StunProtocol.datagram_received``), driven by the current policy.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
import time
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri
from aiortc.sdp import SessionDescription

from media import demux
from media.turn import TurnSecret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_HOST_ADDRESSES = "127.0.0.1"
"""Where media gathers when the server listens on loopback (``SANKE_ICE_HOST_ADDRESSES`` form)."""

LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
"""What media accepts when the server listens on loopback (``SANKE_ICE_ALLOWED_NETWORKS`` form)."""

EVERY_INTERFACE = "*"
"""``SANKE_ICE_HOST_ADDRESSES=*``: every interface (aioice's default), even on a loopback listen address."""

_SCHEMES = ("stun", "stuns", "turn", "turns")


class SdpRejected(ValueError):
    """Remote SDP refused by the ICE policy (the message is shown to the user, zh-CN)."""


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as in the W3C ``RTCIceServer`` dictionary."""

    urls: tuple[str, ...]
    """``stun:host[:port]``, ``turn:host[:port][?transport=udp|tcp]``, ``turns:...``."""

    username: str | None = None
    """TURN username (for coturn with ``lt-cred-mech``); None for STUN and for a minted TURN server."""

    credential: str | None = None
    """TURN password; None for STUN and for a minted TURN server."""

    minted: bool = False
    """A TURN server whose credentials are minted per participant from the shared secret
    (coturn's ``use-auth-secret``; :class:`media.turn.TurnSecret`): written without credentials."""

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in self.urls:
            _validate_url(url)
            if self.minted:
                if not url.startswith("turn"):
                    raise ValueError(f"{url!r}: only TURN servers take minted credentials")
                if self.username is not None or self.credential is not None:
                    raise ValueError(f"TURN server {url!r}: minted credentials replace a username and a credential")
            elif url.startswith("turn") and (not self.username or not self.credential):
                raise ValueError(f"TURN server {url!r} needs a username and a credential")


@dataclass(frozen=True)
class IcePolicy:
    """Where SanKe's ICE may gather, announce and accept candidates."""

    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers for aiortc and for browsers. Empty: none (never a public default)."""

    host_addresses: tuple[str, ...] | None = None
    """Local addresses to gather host candidates on. None: aioice's default (every interface but loopback)."""

    allowed_networks: tuple[IPNetwork, ...] | None = None
    """None: any address. Otherwise candidates and datagram sources must lie in these networks."""

    announced_address: str | None = None
    """Address written into our host candidates instead of the bound one (server behind NAT)."""

    turn: TurnSecret | None = None
    """The secret shared with coturn that mints the credentials of the ``minted`` TURN servers for
    browsers. None: nothing is minted (the SFU's own policy in a media worker never needs it); a
    server that hands out minted servers checks it is set at start (:meth:`check_minting`)."""

    def __post_init__(self) -> None:
        if self.turn is not None and not any(s.minted for s in self.ice_servers):
            raise ValueError(
                "SANKE_TURN_SECRET 已设置，但 SANKE_ICE_SERVERS 里没有不带用户名密码的 TURN 地址 / "
                "SANKE_TURN_SECRET is set but no TURN URL in SANKE_ICE_SERVERS is written without credentials "
                "(write e.g. turn:turn.example.edu.cn:3478?transport=tcp)")
        if self.host_addresses is not None:
            if not self.host_addresses:
                raise ValueError("host_addresses must be None (aioice's default) or name at least one address")
            for address in self.host_addresses:
                ip = _parse_ip(address, "host address")
                if self.allowed_networks is not None and not _in_networks(ip, self.allowed_networks):
                    raise ValueError(f"host address {address} lies outside the allowed networks")
        if self.allowed_networks is not None and not self.allowed_networks:
            raise ValueError("allowed_networks must be None (any) or name at least one network")
        if self.announced_address is not None:
            _parse_ip(self.announced_address, "announced address")

    # ------------------------------------------------------------------ builders

    @classmethod
    def loopback(cls) -> IcePolicy:
        """Tests and benchmarks: gather on 127.0.0.1 only, accept only loopback, no ICE servers."""
        return cls.from_strings(None, LOOPBACK_HOST_ADDRESSES, LOOPBACK_NETWORKS, None)

    @classmethod
    def from_strings(
        cls,
        ice_servers: str | None = None,
        host_addresses: str | None = None,
        allowed_networks: str | None = None,
        announced_address: str | None = None,
        turn_secret: str | None = None,
        turn_ttl_seconds: str | int | None = None,
    ) -> IcePolicy:
        """Build a policy from environment-style strings (empty or None means unset).

        * ``ice_servers``: comma-separated URLs; TURN credentials go before the host,
          ``turn:user:password@turn.example.org:3478?transport=udp``.  Alternatively a
          JSON list of ``{"urls": ..., "username": ..., "credential": ...}`` objects
          (needed when a credential contains a comma).  A TURN URL without credentials
          is minted per participant from ``turn_secret``.
        * ``turn_secret``, ``turn_ttl_seconds``: coturn's ``static-auth-secret`` and the
          lifetime of the credentials minted from it (:class:`media.turn.TurnSecret`).
        * ``host_addresses``: comma-separated IP addresses, e.g. ``127.0.0.1``; ``*``: every interface.
        * ``allowed_networks``: comma-separated networks, e.g. ``127.0.0.0/8,::1/128``.
        * ``announced_address``: one IP address.
        """
        servers = _parse_ice_servers(ice_servers)
        hosts = None
        if host_addresses is not None and host_addresses.strip() and host_addresses.strip() != EVERY_INTERFACE:
            hosts = tuple(
                str(_parse_ip(item, "SANKE_ICE_HOST_ADDRESSES entry"))
                for item in _split(host_addresses, "SANKE_ICE_HOST_ADDRESSES")
            )
        networks = None
        if allowed_networks is not None and allowed_networks.strip():
            networks = tuple(
                _parse_network(item) for item in _split(allowed_networks, "SANKE_ICE_ALLOWED_NETWORKS")
            )
        announced = None
        if announced_address is not None and announced_address.strip():
            announced = str(_parse_ip(announced_address.strip(), "SANKE_ICE_ANNOUNCED_ADDRESS"))
        turn = TurnSecret.from_strings(turn_secret, turn_ttl_seconds)
        try:
            return cls(
                ice_servers=servers,
                host_addresses=hosts,
                allowed_networks=networks,
                announced_address=announced,
                turn=turn,
            )
        except ValueError as exc:
            raise ValueError(f"ICE settings are inconsistent: {exc}") from None

    # ------------------------------------------------------------------ checks

    def check_minting(self) -> None:
        """Raise :class:`ValueError` (zh-CN / English) if a TURN server is to be minted but no secret is set."""
        if self.turn is None:
            for server in self.ice_servers:
                if server.minted:
                    raise ValueError(
                        f"SANKE_ICE_SERVERS 中的 {server.urls[0]} 没有用户名密码：请设置 SANKE_TURN_SECRET"
                        "（与 coturn 的 static-auth-secret 相同），或写成 turn:用户名:密码@主机 / "
                        f"{server.urls[0]} in SANKE_ICE_SERVERS has no credentials: set SANKE_TURN_SECRET "
                        "(coturn's static-auth-secret) or write turn:user:password@host")

    def relay_outside_allowed_networks(self) -> list[str]:
        """TURN server addresses (IP literals) that ``allowed_networks`` would refuse.

        Media relayed by TURN reaches the SFU from the TURN server's relay address: when that
        lies outside the allowed networks, relayed classrooms are refused.  Host names cannot be
        checked here (coturn's ``relay-ip`` may differ from its listening address anyway).
        """
        if self.allowed_networks is None:
            return []
        outside = []
        for server in self.ice_servers:
            for url in server.urls:
                if not url.startswith("turn"):
                    continue
                host = parse_stun_turn_uri(url)["host"]
                try:
                    ip = ipaddress.ip_address(host.strip("[]"))
                except ValueError:
                    continue
                if not _in_networks(ip, self.allowed_networks) and str(ip) not in outside:
                    outside.append(str(ip))
        return outside

    @property
    def restricted(self) -> bool:
        return self.allowed_networks is not None

    def address_allowed(self, address: str) -> bool:
        """Whether a candidate address or datagram source is allowed by this policy.

        mDNS ``.local`` names and other host names are never allowed when the policy is
        restricted: aioice would resolve them by multicast on the LAN.
        """
        if self.allowed_networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return _in_networks(ip, self.allowed_networks)


# ---------------------------------------------------------------------- defaults


def is_loopback_host(host: str) -> bool:
    """Whether a listen address (``SANKE_HOST`` / ``--host``) is reachable only from this machine."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_defaults(listen_host: str, host_addresses: str | None,
                    allowed_networks: str | None) -> tuple[str | None, str | None]:
    """The ``(host_addresses, allowed_networks)`` strings in force for a server listening on ``listen_host``.

    A server on a loopback address can only be reached from its own machine, so when neither
    setting is given its media gathers on 127.0.0.1 and accepts loopback only, like the pages
    served from 127.x (``web/assets/lesson-client.js`` offers only loopback candidates there).
    On any other listen address, or when either setting is given, they stay as given (unset:
    every interface, any address).  ``*`` as ``host_addresses`` asks for every interface
    whatever the listen address (a reverse proxy on the same machine in front of SanKe).
    """
    given = [v for v in (host_addresses, allowed_networks) if v is not None and v.strip()]
    if given or not is_loopback_host(listen_host):
        return host_addresses, allowed_networks
    return LOOPBACK_HOST_ADDRESSES, LOOPBACK_NETWORKS


# ---------------------------------------------------------------------- parsing helpers


def _split(value: str, name: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ValueError(f"{name}: empty entry in {value!r} (entries are separated by single commas)")
    return items


def _parse_ip(value: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IPv4 or IPv6 address") from None


def _parse_network(value: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"SANKE_ICE_ALLOWED_NETWORKS: {value!r} is not a network (write e.g. 127.0.0.0/8 or ::1/128)"
        ) from None


def _in_networks(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[IPNetwork]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip
    return any(ip.version == net.version and ip in net for net in networks)


def _validate_url(url: str) -> None:
    scheme = url.split(":", 1)[0]
    if scheme not in _SCHEMES:
        raise ValueError(f"ICE server URL {url!r}: scheme must be one of {', '.join(_SCHEMES)}")
    try:
        parse_stun_turn_uri(url)
    except ValueError as exc:
        raise ValueError(f"ICE server URL {url!r} is malformed ({exc})") from None


def _parse_ice_servers(value: str | None) -> tuple[IceServer, ...]:
    if value is None or not value.strip():
        return ()
    value = value.strip()
    if value.startswith("["):
        return _parse_ice_servers_json(value)
    servers = []
    for item in _split(value, "SANKE_ICE_SERVERS"):
        scheme, sep, rest = item.partition(":")
        if not sep or scheme not in _SCHEMES:
            raise ValueError(
                f"SANKE_ICE_SERVERS: {item!r} must start with stun:, stuns:, turn: or turns:"
            )
        username = credential = None
        if "@" in rest:
            if not scheme.startswith("turn"):
                raise ValueError(f"SANKE_ICE_SERVERS: {item!r}: only TURN servers take credentials")
            userinfo, _, rest = rest.rpartition("@")
            username, sep, credential = userinfo.partition(":")
            if not username or not sep or not credential:
                raise ValueError(
                    f"SANKE_ICE_SERVERS: {scheme}:...@{rest}: credentials must be written user:password@host"
                )
        url = f"{scheme}:{rest}"
        minted = scheme.startswith("turn") and username is None
        try:
            servers.append(IceServer(urls=(url,), username=username, credential=credential, minted=minted))
        except ValueError as exc:
            raise ValueError(f"SANKE_ICE_SERVERS: {exc}") from None
    return tuple(servers)


def _parse_ice_servers_json(value: str) -> tuple[IceServer, ...]:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"SANKE_ICE_SERVERS: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise ValueError("SANKE_ICE_SERVERS: JSON form must be a list of objects")  # noqa: TRY004
    servers = []
    for entry in data:
        if not isinstance(entry, dict) or "urls" not in entry:
            raise ValueError("SANKE_ICE_SERVERS: each JSON entry must be an object with 'urls'")
        urls = entry["urls"]
        urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if not all(isinstance(u, str) for u in urls):
            raise ValueError("SANKE_ICE_SERVERS: 'urls' must be a string or a list of strings")
        username, credential = entry.get("username"), entry.get("credential")
        minted = any(u.startswith("turn") for u in urls) and username is None and credential is None
        try:
            servers.append(IceServer(urls=urls, username=username, credential=credential, minted=minted))
        except ValueError as exc:
            raise ValueError(f"SANKE_ICE_SERVERS: {exc}") from None
    return tuple(servers)


# ---------------------------------------------------------------------- configuration


def rtc_configuration(policy: IcePolicy) -> RTCConfiguration:
    """aiortc configuration with the policy's servers; an explicit empty list when there are none.

    Minted TURN servers are left out: they are for browsers behind firewalls, the SFU itself
    is reached on its own (or announced) address and never relays through TURN.

    Bundle policy ``max-bundle``: every m-line of a connection on one ICE/DTLS transport from the
    first offer on. With aiortc's default (``balanced``) the SFU's offer to a subscriber put the
    audio m-lines on a transport of their own inside the BUNDLE group, and when the answer bundled
    everything onto the first m-line's transport (as browsers do) aiortc moved only the *first*
    audio transceiver there: a main classroom heard one receiving classroom's microphone only."""
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in policy.ice_servers
        if not s.minted
    ]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def browser_ice_servers(policy: IcePolicy, user: str | int | None = None,
                        now: float | None = None) -> list[dict[str, Any]]:
    """The ``iceServers`` list for browsers (``joined.ice_servers``, ``resumed.ice_servers``).

    Minted TURN servers carry credentials minted for ``user`` (its user id) at ``now`` (default:
    the current time); a policy with minted servers needs both a ``user`` and its secret."""
    result: list[dict[str, Any]] = []
    for s in policy.ice_servers:
        entry: dict[str, Any] = {"urls": list(s.urls)}
        if s.minted:
            if policy.turn is None or user is None:
                raise ValueError("minted TURN credentials need SANKE_TURN_SECRET and a user")
            minted = policy.turn.mint(user, time.time() if now is None else now)
            entry["username"], entry["credential"] = minted.username, minted.credential
        if s.username is not None:
            entry["username"] = s.username
        if s.credential is not None:
            entry["credential"] = s.credential
        result.append(entry)
    return result


# ---------------------------------------------------------------------- SDP


def _candidate_fields(line: str) -> list[str] | None:
    """The whitespace-separated fields of an ``a=candidate:`` line, or None if it is not one."""
    if not line.startswith("a=candidate:"):
        return None
    return line.split()


def _is_mdns(address: str) -> bool:
    return address.lower().rstrip(".").endswith(".local")


def filter_local_sdp(sdp: str, policy: IcePolicy) -> str:
    """Drop our candidates the policy does not allow and apply the announced address.

    Candidates with an mDNS ``.local`` name are always dropped.  With an announced
    address, host candidates (and ``c=`` lines naming their address) carry it instead.
    Lines are joined with CRLF.
    """
    out: list[str] = []
    rewritten: set[str] = set()
    for line in sdp.splitlines():
        fields = _candidate_fields(line)
        if fields is not None:
            if len(fields) < 8:
                continue
            address = fields[4]
            if _is_mdns(address) or not policy.address_allowed(address):
                continue
            if policy.announced_address is not None and fields[7] == "host":
                rewritten.add(address)
                fields[4] = policy.announced_address
                line = " ".join(fields)
        out.append(line)
    if rewritten and policy.announced_address is not None:
        family = "IP6" if ipaddress.ip_address(policy.announced_address).version == 6 else "IP4"
        for i, line in enumerate(out):
            if line.startswith("c=IN "):
                parts = line.split()
                if len(parts) == 3 and parts[2] in rewritten:
                    out[i] = f"c=IN {family} {policy.announced_address}"
    return "\r\n".join(out) + "\r\n"


def _bundle_groups(sdp: str) -> list[list[str]]:
    groups = []
    for line in sdp.splitlines():
        if line.startswith("a=group:BUNDLE"):
            groups.append(line.split()[1:])
    return groups


def check_remote_sdp(sdp: str, policy: IcePolicy) -> str:
    """Return ``sdp`` unchanged if the policy accepts it, else raise :class:`SdpRejected`.

    Always: the text must parse as SDP.  When the policy is restricted: every candidate
    lies in the allowed networks (no ``.local`` names), and every media section in use
    (port not 0) has a candidate itself or through its BUNDLE group.
    """
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v="):
        raise SdpRejected("会话描述（SDP）格式无效：缺少 v= 行")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError, AssertionError, KeyError, ...
        raise SdpRejected(f"会话描述（SDP）格式无效：{type(exc).__name__}") from None
    if not parsed.media:
        raise SdpRejected("会话描述（SDP）格式无效：没有媒体段（m= 行）")
    if not policy.restricted:
        return sdp

    for line in sdp.splitlines():
        fields = _candidate_fields(line)
        if fields is None:
            continue
        address = fields[4] if len(fields) > 4 else ""
        if _is_mdns(address):
            raise SdpRejected(f"不接受 mDNS 候选地址 {address}：请关闭浏览器的 mDNS 地址隐藏")
        if not policy.address_allowed(address):
            raise SdpRejected(f"候选地址 {address} 不在允许的网络范围内")

    with_candidates = {m.rtp.muxId for m in parsed.media if m.ice_candidates}
    bundled: dict[str, list[str]] = {}
    for group in _bundle_groups(sdp):
        for mid in group:
            bundled[mid] = group
    for index, media in enumerate(parsed.media):
        if media.port == 0:
            continue
        mid = media.rtp.muxId
        if media.ice_candidates:
            continue
        if mid in bundled and any(other in with_candidates for other in bundled[mid]):
            continue
        raise SdpRejected(f"第 {index + 1} 个媒体段（{media.kind}）没有可用的候选地址")
    return sdp


# ---------------------------------------------------------------------- aioice patches

_current: IcePolicy | None = None
_originals: dict[str, Callable[..., Any]] = {}


def current_policy() -> IcePolicy | None:
    """The policy installed by :func:`apply`, or None."""
    return _current


def _patched_get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    policy = _current
    if policy is None or policy.host_addresses is None:
        return _originals["get_host_addresses"](use_ipv4, use_ipv6)
    result = []
    for address in policy.host_addresses:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            result.append(address)
    return result


def _patched_datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    """Every datagram on an aioice socket: through :func:`media.demux.admit`, then the address policy."""
    verdict = demux.admit(self, data, addr)
    if verdict:
        demux.count(self.receiver, verdict)
        return
    policy = _current
    if policy is not None and policy.restricted and not policy.address_allowed(str(addr[0]).split("%")[0]):
        demux.count(self.receiver, demux.OUTSIDE)
        return
    try:
        _originals["datagram_received"](self, data, addr)
    except Exception:  # noqa: BLE001 - aioice's STUN parser raises struct.error on broken attributes, ...
        demux.count(self.receiver, demux.MALFORMED)


def apply(policy: IcePolicy) -> None:
    """Make ``policy`` the process-wide policy for aioice; installs the patches once."""
    global _current
    if not _originals:
        _originals["get_host_addresses"] = aioice.ice.get_host_addresses
        _originals["datagram_received"] = aioice.ice.StunProtocol.datagram_received
        aioice.ice.get_host_addresses = _patched_get_host_addresses
        aioice.ice.StunProtocol.datagram_received = _patched_datagram_received  # type: ignore[method-assign]
    _current = policy


def reset() -> None:
    """Restore aioice's original functions and forget the current policy (for tests)."""
    global _current
    if _originals:
        aioice.ice.get_host_addresses = _originals.pop("get_host_addresses")
        aioice.ice.StunProtocol.datagram_received = _originals.pop("datagram_received")  # type: ignore[method-assign]
    _originals.clear()
    _current = None


__all__: Sequence[str] = (
    "IcePolicy",
    "IceServer",
    "SdpRejected",
    "apply",
    "browser_ice_servers",
    "check_remote_sdp",
    "current_policy",
    "filter_local_sdp",
    "is_loopback_host",
    "listen_defaults",
    "reset",
    "rtc_configuration",
)
