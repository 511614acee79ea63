"""What the SFU reads from SDP beyond what aiortc keeps, and what it adds to aiortc's SDP text.

aiortc parses SDP into its own parameters but ignores RFC 8853 simulcast
(``a=rid`` / ``a=simulcast``).  The SFU never needs aiortc to *receive*
simulcast (it reads the RID header extension itself), it only needs the
publisher to *send* it, which a browser does when the answer accepts the
offered RIDs.  So the answer text is completed here, after aiortc made it.

aiortc knows no RED (RFC 2198) either, and signals no Opus parameters.  The
SFU never has aiortc encode or decode, so RED is added to its text here too:
accepted in a publisher's answer where offered (``accept_red``), offered to
every subscriber (``offer_red``), and read back from the peer's description
(``red_payload_types``); every Opus the SFU signals asks for in-band FEC.
The global codec table of aiortc is left alone (aiortc clients in the same
process must not think they can decode RED).

aiortc does not know transport-wide congestion control either; the SFU does it itself
(``media/twcc.py``), so the transport-cc header extension and ``a=rtcp-fb:PT transport-cc``
are added here to the SFU's offers (subscriber connections) and to its answers when the
publisher offered them, and the id a remote description uses is read back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import sdp as aiortc_sdp

from media.rtp import URI_MID, URI_REPAIRED_RID, URI_RID
from media.twcc import URI_TRANSPORT_CC

_RID = re.compile(r"^a=rid:([A-Za-z0-9_-]{1,16}) send\b")
_SIMULCAST = re.compile(r"^a=simulcast:send (\S+)")
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")
_MID = re.compile(r"^a=mid:(\S+)")
_TRANSPORT_CC_FB = re.compile(r"^a=rtcp-fb:(\d+|\*) transport-cc\s*$")
TRANSPORT_CC_ID = 5
"""The id the SFU offers transport-cc with (aiortc's own extensions use 1–3, on every m-line)."""


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


# ---------------------------------------------------------------------- RED and Opus FEC

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9_.-]+)/(\d+)")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_MLINE = re.compile(r"^m=(\w+) (\d+) (\S+)((?: \d+)*)\s*$")
RED_PAYLOAD_TYPE = 63
"""The payload type the SFU offers RED with (Chromium's own choice; free among aiortc's)."""
OPUS_FMTP = {"minptime": "10", "useinbandfec": "1"}
"""Opus parameters the SFU signals both ways: in-band FEC (RFC 7587 §6.1) is wanted."""


@dataclass
class _AudioSection:
    mid: str
    port: int
    formats: list[int]
    opus: int | None
    red: int | None
    red_primary: int | None
    """The payload type RED's fmtp names as its blocks' (``111/111`` → 111), or None without fmtp."""


def _audio_section(lines: list[str]) -> _AudioSection | None:
    m = _MLINE.match(lines[0])
    if m is None or m.group(1) != "audio":
        return None
    formats = [int(x) for x in m.group(4).split()]
    mid = ""
    opus = red = red_primary = None
    for line in lines[1:]:
        mm = _MID.match(line)
        if mm:
            mid = mm.group(1)
            continue
        mm = _RTPMAP.match(line)
        if mm and int(mm.group(1)) in formats and mm.group(3) == "48000":
            name = mm.group(2).lower()
            if name == "opus" and opus is None:
                opus = int(mm.group(1))
            elif name == "red" and red is None:
                red = int(mm.group(1))
    if red is not None:
        for line in lines[1:]:
            mm = _FMTP.match(line)
            if mm and int(mm.group(1)) == red:
                first = mm.group(2).strip().split("/")[0]
                red_primary = int(first) if first.isdigit() else -1
    return _AudioSection(mid, int(m.group(2)), formats, opus, red, red_primary)


def red_payload_types(sdp: str) -> dict[str, tuple[int, int]]:
    """Per audio mid: (RED payload type, Opus payload type) where RED of Opus is negotiated.

    RED counts only with 48 kHz Opus in the same m-line as its blocks' format (``a=fmtp:63 111/111``,
    or no fmtp at all).  Rejected m-lines (port 0) count for nothing.
    """
    result: dict[str, tuple[int, int]] = {}
    for lines in _sections(sdp):
        section = _audio_section(lines)
        if section is None or section.port == 0 or section.red is None or section.opus is None:
            continue
        if section.red_primary is not None and section.red_primary != section.opus:
            continue
        result[section.mid] = (section.red, section.opus)
    return result


def _with_opus_fec(lines: list[str], opus: int) -> list[str]:
    """``lines`` with the Opus fmtp asking for in-band FEC (other parameters kept)."""
    out: list[str] = []
    done = False
    for line in lines:
        mm = _FMTP.match(line)
        if mm and int(mm.group(1)) == opus:
            params = dict(OPUS_FMTP)
            for item in mm.group(2).split(";"):
                key, _, value = item.strip().partition("=")
                if key and key not in params:
                    params[key] = value
            params["useinbandfec"] = "1"
            line = f"a=fmtp:{opus} " + ";".join(f"{k}={v}" if v else k for k, v in params.items())
            done = True
        out.append(line)
    if not done:
        for i, line in enumerate(out):
            mm = _RTPMAP.match(line)
            if mm and int(mm.group(1)) == opus:
                out.insert(i + 1, f"a=fmtp:{opus} " + ";".join(f"{k}={v}" for k, v in OPUS_FMTP.items()))
                break
    return out


def _add_red(lines: list[str], red: int, opus: int, first: bool) -> list[str]:
    """``lines`` (an audio m-section) with RED of Opus added, before or after Opus in the m-line."""
    m = _MLINE.match(lines[0])
    assert m is not None
    formats = [int(x) for x in m.group(4).split()]
    if red in formats:
        return lines
    at = formats.index(opus) if opus in formats else len(formats)
    formats.insert(at if first else at + 1, red)
    out = [f"m={m.group(1)} {m.group(2)} {m.group(3)} " + " ".join(str(f) for f in formats)]
    body = lines[1:]
    at_line = len(body)
    for i, line in enumerate(body):
        mm = _RTPMAP.match(line)
        if mm and int(mm.group(1)) == opus:
            at_line = i + 1
            while at_line < len(body) and body[at_line].startswith(("a=fmtp:", "a=rtcp-fb:")) \
                    and body[at_line].split(":", 1)[1].split(" ", 1)[0] == str(opus):
                at_line += 1
            break
    return out + body[:at_line] + [f"a=rtpmap:{red} red/48000/2", f"a=fmtp:{red} {opus}/{opus}"] + body[at_line:]


def _join(sdp: str, sections: list[list[str]]) -> str:
    head: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            break
        head.append(line)
    return "\r\n".join(head + [line for section in sections for line in section]) + "\r\n"


def accept_red(offer_sdp: str, answer_sdp: str) -> str:
    """A publisher's answer with RED of Opus accepted where offered, and Opus FEC asked for.

    aiortc answers Opus only (it knows no RED).  Where the offer has RED of the Opus the answer
    kept, RED is added with the offer's payload types and in the offer's order: a browser sends RED
    when it is first (``setCodecPreferences``), Opus otherwise.  Every answered Opus gets
    ``useinbandfec=1``, so the browser adds Opus FEC once its receiver reports loss.
    """
    offered: dict[str, tuple[int, int, bool]] = {}
    for lines in _sections(offer_sdp):
        section = _audio_section(lines)
        if section is None or section.red is None or section.opus is None:
            continue
        if section.red_primary is not None and section.red_primary != section.opus:
            continue
        first = section.formats.index(section.red) < section.formats.index(section.opus)
        offered[section.mid] = (section.red, section.opus, first)
    sections = _sections(answer_sdp)
    out: list[list[str]] = []
    for lines in sections:
        section = _audio_section(lines)
        if section is not None and section.port != 0 and section.opus is not None:
            lines = _with_opus_fec(lines, section.opus)
            red = offered.get(section.mid)
            if red is not None and red[1] == section.opus:
                lines = _add_red(lines, red[0], section.opus, red[2])
        out.append(lines)
    return _join(answer_sdp, out)


def offer_red(offer_sdp: str) -> str:
    """The SFU's offer to a subscriber with RED of Opus offered (after Opus) and Opus FEC signalled.

    A browser that answers with RED gets the audio as RED (``Consumer.red``); one that does not
    (aiortc) gets plain Opus.  RED takes :data:`RED_PAYLOAD_TYPE` unless the offer uses it already.
    """
    sections = _sections(offer_sdp)
    used = {int(m.group(1)) for lines in sections for line in lines for m in [_RTPMAP.match(line)] if m}
    red = RED_PAYLOAD_TYPE
    while red in used and red > 35:
        red -= 1
    out: list[list[str]] = []
    for lines in sections:
        section = _audio_section(lines)
        if section is not None and section.port != 0 and section.opus is not None and red not in used:
            lines = _add_red(_with_opus_fec(lines, section.opus), red, section.opus, False)
        out.append(lines)
    return _join(offer_sdp, out)


# ---------------------------------------------------------------------- transport-cc

def _rtp_section(section: list[str]) -> bool:
    m = section[0]
    return (m.startswith("m=audio ") or m.startswith("m=video ")) and not m.split()[1] == "0"


def _media_pts(section: list[str]) -> list[int]:
    """Payload types of the section's codecs, RTX/RED/FEC excluded."""
    out = []
    for line in section:
        m = _RTPMAP.match(line)
        if m and m.group(2).lower() not in ("rtx", "red", "ulpfec", "flexfec-03"):
            out.append(int(m.group(1)))
    return out


def _rebuild(sdp: str, edit: Callable[[list[str]], list[str]]) -> str:
    """Apply ``edit`` to each m-section (session part kept as is)."""
    head: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    out = head[:]
    for section in sections:
        out.extend(edit(section))
    return "\r\n".join(out) + "\r\n"


def _with_transport_cc(section: list[str], ext_id: int, pts: list[int]) -> list[str]:
    lines = [line for line in section if not (_EXTMAP.match(line) and _EXTMAP.match(line).group(2) == URI_TRANSPORT_CC)]  # type: ignore[union-attr]
    lines.append(f"a=extmap:{ext_id} {URI_TRANSPORT_CC}")
    have = {m.group(1) for line in lines for m in [_TRANSPORT_CC_FB.match(line)] if m}
    for pt in pts:
        if str(pt) not in have:
            lines.append(f"a=rtcp-fb:{pt} transport-cc")
    return lines


def offer_transport_cc(offer_sdp: str, ext_id: int = TRANSPORT_CC_ID) -> str:
    """The SFU's offer with transport-cc on every audio/video m-section (extension and feedback)."""

    def edit(section: list[str]) -> list[str]:
        if not _rtp_section(section):
            return section
        return _with_transport_cc(section, ext_id, _media_pts(section))

    return _rebuild(offer_sdp, edit)


def transport_cc_id(sdp: str) -> int:
    """The transport-cc extension id a description uses (BUNDLE: one for all m-lines), 0 if none.

    Both the header extension and ``a=rtcp-fb:… transport-cc`` must be there (a browser sends
    feedback only then); ``ValueError`` if m-sections disagree on the id.
    """
    found = 0
    for section in _sections(sdp):
        if not _rtp_section(section):
            continue
        ext = next((int(m.group(1)) for line in section for m in [_EXTMAP.match(line)]
                    if m and m.group(2) == URI_TRANSPORT_CC), 0)
        if not ext or not any(_TRANSPORT_CC_FB.match(line) for line in section):
            continue
        if not 1 <= ext <= 14:
            continue  # the SFU writes one-byte elements only
        if found and ext != found:
            raise ValueError("m-sections use different transport-cc extension ids")
        found = ext
    return found


def accept_transport_cc(offer_sdp: str, answer_sdp: str) -> tuple[str, int]:
    """A publisher offered transport-cc: add it to the answer's matching m-sections (the offer's
    id, feedback for the payload types the offer had it for); returns (answer, id or 0)."""
    offered: dict[str, tuple[int, set[str]]] = {}
    for section in _sections(offer_sdp):
        if not _rtp_section(section):
            continue
        mid = next((m.group(1) for line in section for m in [_MID.match(line)] if m), None)
        ext = next((int(m.group(1)) for line in section for m in [_EXTMAP.match(line)]
                    if m and m.group(2) == URI_TRANSPORT_CC), 0)
        fb = {m.group(1) for line in section for m in [_TRANSPORT_CC_FB.match(line)] if m}
        if mid is not None and 1 <= ext <= 14 and fb:
            offered[mid] = (ext, fb)
    if not offered:
        return answer_sdp, 0

    def edit(section: list[str]) -> list[str]:
        if not _rtp_section(section):
            return section
        mid = next((m.group(1) for line in section for m in [_MID.match(line)] if m), None)
        if mid not in offered:
            return section
        ext, fb = offered[mid]
        pts = [pt for pt in _media_pts(section) if "*" in fb or str(pt) in fb]
        return _with_transport_cc(section, ext, pts)

    answer = _rebuild(answer_sdp, edit)
    try:
        return answer, transport_cc_id(answer)
    except ValueError:
        return answer_sdp, 0
