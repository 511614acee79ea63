"""Signed, expiring URL prefixes for a lesson's LL-HLS stream.

A viewer gets a path prefix ``/hls/<lesson>/<expires>/<sig>/``; every playlist, part and segment of the
lesson is served under it (``camera/index.m3u8``, ``main.m3u8`` …), and the URIs inside the playlists are
relative, so they inherit the prefix.  The prefix is good for one lesson, any file under it, until
``expires`` (Unix seconds).  A reader of a recording gets ``/hls/<lesson>/r<recording>/<expires>/<sig>/``:
the stream that recording keeps (its ``hls/`` folder, ended: the replay), nothing of another recording.

``sig`` is the MD5 of the string ``"<expires><scope> <link secret>"``, where the scope is the prefix's path
before the expiry (``/hls/<lesson>``, or ``/hls/<lesson>/r<recording>``), base64url without padding
(22 characters): exactly what nginx's ``secure_link``/``secure_link_md5`` checks, so an nginx (or a CDN with
the same token scheme) serving the files as an origin checks the very same prefixes SanKe hands out
(``docs/operations.md``).  MD5 rather than an HMAC because nginx cannot compute an HMAC; the secret sits at
the end of the string and the server alone chooses what is signed (a lesson and an expiry, both
digits), so a viewer cannot extend or choose a message, and the link secret is not the node's token key
but a key derived from it (``link_secret``): an nginx configuration that holds it can check and forge
stream links, nothing else.

Expiries are rounded up to ``ROUND_S``, so the viewers of a lesson who ask within the same few minutes share
one prefix (a cache in front, nginx's or a CDN's, keeps one copy of each part for all of them).

Plain functions: no FastAPI, no clock of its own (callers pass ``now``).  Owns the string signed and the
check; not who may watch (``scheduler.joining.watcher_role``) nor where the files are
(``server.core.hls_files``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import Enum

ROUND_S = 300
"""Expiries are rounded up to a multiple of this (seconds): one prefix per lesson per five minutes."""
_SIG = re.compile(r"[A-Za-z0-9_-]{22}")
_DIGITS = re.compile(r"[1-9][0-9]{0,11}")
"""A lesson id, a recording id or an expiry as written in a prefix: no sign, no leading zero (one spelling per link)."""


def link_secret(token_key: str) -> str:
    """The secret of stream links, derived from the node's token key (the same on every node of a cluster):
    what goes into an nginx configuration (``sanke hls-secret``) instead of the token key itself."""
    return hmac.new(token_key.encode(), b"sanke hls link v1", hashlib.sha256).hexdigest()


def scope(lesson_id: int, recording_id: int | None = None) -> str:
    """What a prefix is good for: ``/hls/<lesson>`` (the lesson's stream) or ``/hls/<lesson>/r<recording>``
    (the stream one recording of it keeps)."""
    return f"/hls/{lesson_id}" + (f"/r{recording_id}" if recording_id is not None else "")


def signed_string(lesson_id: int, expires: int, secret: str, recording_id: int | None = None) -> str:
    """The exact string whose MD5 is the signature (nginx: ``secure_link_md5 "$expires/hls/$lesson $secret"``)."""
    return f"{expires}{scope(lesson_id, recording_id)} {secret}"


def signature(lesson_id: int, expires: int, secret: str, recording_id: int | None = None) -> str:
    digest = hashlib.md5(signed_string(lesson_id, expires, secret, recording_id).encode()).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def expiry(now: int, ttl_s: int) -> int:
    """When a prefix asked for at ``now`` expires: at least ``ttl_s`` later, rounded up to ``ROUND_S``."""
    return -(-(now + ttl_s) // ROUND_S) * ROUND_S


@dataclass(frozen=True)
class Link:
    lesson_id: int
    expires: int
    sig: str
    recording_id: int | None = None

    @property
    def prefix(self) -> str:
        """``/hls/<lesson>/<expires>/<sig>/`` or ``/hls/<lesson>/r<recording>/<expires>/<sig>/`` (with the
        trailing slash)."""
        return f"{scope(self.lesson_id, self.recording_id)}/{self.expires}/{self.sig}/"


def sign(lesson_id: int, expires: int, secret: str, recording_id: int | None = None) -> Link:
    return Link(lesson_id, expires, signature(lesson_id, expires, secret, recording_id), recording_id)


class Refusal(str, Enum):
    """Why a prefix was refused."""

    malformed = "malformed"
    """Not ``<digits>/<digits>/<22 base64url characters>``."""
    forged = "forged"
    """The signature does not match (altered, made for another lesson, recording or expiry, or with another
    secret)."""
    expired = "expired"


def check(lesson: str, expires: str, sig: str, secret: str, now: int, recording: str | None = None) -> Refusal | None:
    """None when the prefix's path segments (``recording``: the digits after ``r`` of a recording's prefix)
    are a valid, unexpired link; otherwise why not.  The signature is compared in constant time, and before the
    expiry is looked at (an expired forgery is ``forged``)."""
    if not (_DIGITS.fullmatch(lesson) and _DIGITS.fullmatch(expires) and _SIG.fullmatch(sig)
            and (recording is None or _DIGITS.fullmatch(recording))):
        return Refusal.malformed
    rid = int(recording) if recording is not None else None
    if not hmac.compare_digest(signature(int(lesson), int(expires), secret, rid), sig):
        return Refusal.forged
    if int(expires) < now:
        return Refusal.expired
    return None
