"""One ICE candidate attribute (RFC 8839 §5.1) as plain data: ``Candidate.parse(text)``.

Owns the grammar of a trickled candidate (``ice_candidate.candidate`` in signaling,
``RTCIceCandidate.candidate`` in a browser): ``[candidate:]foundation component transport
priority address port typ type [raddr A rport P] [name value ...]``.  Anything else raises
``ValueError`` — never ``AssertionError``, ``IndexError`` or an out-of-range port handed on to
aiortc and aioice, whose own parser (``aiortc.sdp.candidate_from_sdp``) asserts on short lines
and takes any number as a port.

Must not: check the ICE policy (allowed networks, mDNS: ``media.ice``), import aiortc (the
signaling layer validates with it too), or do I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_CHARS = 2048
"""A candidate line longer than this is refused (browsers send ~150 characters)."""

_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")
_DIGITS = re.compile(r"[0-9]{1,10}")
_TOKEN = re.compile(r"[!-~]{1,256}")  # printable ASCII without space
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
TRANSPORTS = ("udp", "tcp")
TYPES = ("host", "srflx", "prflx", "relay")
TCP_TYPES = ("active", "passive", "so")


def _number(text: str, what: str, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{what} is not a number: {text[:20]!r}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is outside {low}..{high}")
    return value


def _address(text: str, what: str) -> str:
    """An IPv4 or IPv6 address (with an optional zone), or a host name (mDNS ``….local``)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    if ":" in text or not 0 < len(name) <= 253 or not all(_LABEL.fullmatch(x) for x in name.split(".")):
        raise ValueError(f"{what} is neither an IP address nor a host name: {text[:40]!r}")
    if name.replace(".", "").isdigit():
        raise ValueError(f"{what} is not a valid IPv4 address: {text[:40]!r}")
    return text


@dataclass(frozen=True)
class Candidate:
    foundation: str
    component: int
    transport: str
    """``udp`` or ``tcp`` (lower case)."""
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    tcp_type: str | None = None

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """A candidate line, with or without its ``candidate:`` prefix; raises ``ValueError``."""
        if not isinstance(text, str):
            raise ValueError("a candidate is a string")
        if len(text) > MAX_CHARS:
            raise ValueError(f"candidate longer than {MAX_CHARS} characters")
        if text.startswith("a="):
            text = text[2:]
        if text.startswith("candidate:"):
            text = text[len("candidate:"):]
        bits = text.split(" ")
        if len(bits) < 8:
            raise ValueError(f"candidate has {len(bits)} of the 8 required fields")
        if len(bits) % 2:
            raise ValueError("candidate extension without a value")
        foundation, component, transport, priority, address, port, typ, kind = bits[:8]
        if not _FOUNDATION.fullmatch(foundation):
            raise ValueError(f"bad foundation {foundation[:40]!r}")
        if transport.lower() not in TRANSPORTS:
            raise ValueError(f"transport {transport[:20]!r} is not udp or tcp")
        if typ != "typ" or kind not in TYPES:
            raise ValueError(f"candidate type {typ[:10]!r} {kind[:20]!r} is not one of {', '.join(TYPES)}")
        extensions: dict[str, str] = {}
        for name, value in zip(bits[8::2], bits[9::2]):
            if not _TOKEN.fullmatch(name) or not _TOKEN.fullmatch(value):
                raise ValueError(f"bad candidate extension {name[:20]!r}")
            if name in extensions:
                raise ValueError(f"candidate extension {name[:20]!r} given twice")
            extensions[name] = value
        tcp_type = extensions.get("tcptype")
        if tcp_type is not None and tcp_type not in TCP_TYPES:
            raise ValueError(f"tcptype {tcp_type[:20]!r} is not one of {', '.join(TCP_TYPES)}")
        raddr, rport = extensions.get("raddr"), extensions.get("rport")
        return cls(
            foundation=foundation,
            component=_number(component, "component", 1, 256),
            transport=transport.lower(),
            priority=_number(priority, "priority", 0, 2**32 - 1),
            address=_address(address, "address"),
            port=_number(port, "port", 1 if tcp_type is None else 0, 65535),
            type=kind,
            related_address=None if raddr is None else _address(raddr, "raddr"),
            related_port=None if rport is None else _number(rport, "rport", 0, 65535),
            tcp_type=tcp_type,
        )
