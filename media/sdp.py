"""What the SFU reads from SDP beyond what aiortc keeps, and the one thing it adds.

aiortc parses SDP into its own parameters but ignores RFC 8853 simulcast
(``a=rid`` / ``a=simulcast``).  The SFU never needs aiortc to *receive*
simulcast (it reads the RID header extension itself), it only needs the
publisher to *send* it, which a browser does when the answer accepts the
offered RIDs.  So the answer text is completed here, after aiortc made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiortc import sdp as aiortc_sdp

from media.rtp import URI_MID, URI_REPAIRED_RID, URI_RID

_RID = re.compile(r"^a=rid:([A-Za-z0-9_-]{1,16}) send\b")
_SIMULCAST = re.compile(r"^a=simulcast:send (\S+)")
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")
_MID = re.compile(r"^a=mid:(\S+)")


@dataclass
class OfferedMedia:
    """One m-section of a publisher's offer, as the SFU needs it."""

    mid: str
    kind: str
    direction: str
    """As offered: ``sendonly``/``sendrecv`` means the publisher sends on it."""
    port: int
    msid_track: str | None
    ssrcs: list[int] = field(default_factory=list)
    """Primary SSRCs in the order listed (one without simulcast)."""
    rtx_of: dict[int, int] = field(default_factory=dict)
    """RTX SSRC → primary SSRC (``a=ssrc-group:FID``)."""
    rids: list[str] = field(default_factory=list)
    """Simulcast RIDs offered for sending, in the offer's order."""
    extmap: dict[str, int] = field(default_factory=dict)
    """Header extension URI → id as offered."""

    @property
    def sends(self) -> bool:
        return self.port != 0 and self.direction in ("sendonly", "sendrecv")


def _sections(sdp: str) -> list[list[str]]:
    """The m-sections as lists of lines (the session part dropped)."""
    out: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append([line])
        elif out:
            out[-1].append(line)
    return out


def parse_offer(sdp: str) -> list[OfferedMedia]:
    """The m-sections of a (policy-checked) remote offer; ``ValueError`` if unreadable."""
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises assorted errors on junk
        raise ValueError(f"unreadable SDP: {exc}") from None
    raw = _sections(sdp)
    result: list[OfferedMedia] = []
    for media, lines in zip(parsed.media, raw, strict=False):
        if media.kind not in ("audio", "video"):
            continue
        mid = media.rtp.muxId or ""
        rtx_of: dict[int, int] = {}
        for group in media.ssrc_group:
            if group.semantic == "FID" and len(group.items) == 2:
                rtx_of[int(group.items[1])] = int(group.items[0])
        ssrcs: list[int] = []
        for s in media.ssrc:
            if s.ssrc not in rtx_of and s.ssrc not in ssrcs:
                ssrcs.append(s.ssrc)
        rids: list[str] = []
        extmap: dict[str, int] = {}
        for line in lines:
            m = _RID.match(line)
            if m:
                rids.append(m.group(1))
                continue
            m = _EXTMAP.match(line)
            if m:
                extmap[m.group(2)] = int(m.group(1))
        track = None
        if media.msid:
            parts = media.msid.split()
            track = parts[1] if len(parts) > 1 else None
        result.append(OfferedMedia(
            mid=mid, kind=media.kind, direction=media.direction or "sendrecv", port=media.port,
            msid_track=track, ssrcs=ssrcs, rtx_of=rtx_of, rids=rids, extmap=extmap,
        ))
    return result


def accept_simulcast(offer: list[OfferedMedia], answer_sdp: str) -> str:
    """Add ``a=rid:X recv``, ``a=simulcast:recv`` and the RID extmaps to the answer.

    Only for m-sections whose offer carries RIDs; the extension ids are the
    offer's (an answer must not renumber them).
    """
    wanted = {m.mid: m for m in offer if m.rids and m.kind == "video"}
    if not wanted:
        return answer_sdp
    lines = answer_sdp.splitlines()
    out: list[str] = []
    current: OfferedMedia | None = None

    def close_section() -> None:
        if current is None:
            return
        present = {u for line in section for mm in [_EXTMAP.match(line)] if mm for u in [mm.group(2)]}
        for uri in (URI_MID, URI_RID, URI_REPAIRED_RID):
            if uri in current.extmap and uri not in present:
                out.append(f"a=extmap:{current.extmap[uri]} {uri}")
        for rid in current.rids:
            out.append(f"a=rid:{rid} recv")
        out.append("a=simulcast:recv " + ";".join(current.rids))

    section: list[str] = []
    for line in lines:
        if line.startswith("m="):
            close_section()
            current = None
            section = []
        out.append(line)
        section.append(line)
        m = _MID.match(line)
        if m:
            current = wanted.get(m.group(1))
    close_section()
    return "\r\n".join(out) + "\r\n"
