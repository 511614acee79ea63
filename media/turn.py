"""TURN credentials that expire: coturn's REST-API shared secret (``use-auth-secret``).

Owns minting a ``(username, credential)`` pair for one participant from the secret SanKe shares
with coturn (``static-auth-secret``): the username is ``"<expiry unix time>:<user id>"`` and the
credential ``base64(hmac-sha1(secret, username))`` — what coturn computes itself from the username
it is sent, so coturn needs no user database, and a credential stops working at its expiry (coturn
refuses a new allocation once the time in the username has passed; one made before goes on).

It must not log, print or return the secret: :class:`TurnSecret` keeps it out of ``repr``, and
nothing here puts it in an exception message.  It knows nothing of URLs or participants' roles;
``media.ice`` hands out the minted pairs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

MIN_SECRET_CHARS = 16
"""Shorter shared secrets are refused: anyone who learns it can mint credentials for any user."""

DEFAULT_TTL_S = 6 * 3600
"""A credential lives 6 h: longer than any lesson with its opening lead and closing grace (a resume
mints a fresh one anyway)."""

MIN_TTL_S = 3600
"""Shorter lifetimes are refused: a page makes new connections in the middle of a lesson (it
publishes when called on stage, it reconnects after a failure) with the credentials it was given,
and coturn refuses a new allocation with an expired one: the classroom would lose its media."""

MAX_TTL_S = 7 * 24 * 3600
"""Longer lifetimes are refused: a leaked credential would stay usable for too long."""

_PLACEHOLDERS = {"changeme", "change-me", "secret", "sanke", "test", "turn", "coturn", "password"}


def _both(zh: str, en: str) -> str:
    """A start-up message an operator reads: Chinese first, then English."""
    return f"{zh} / {en}"


@dataclass(frozen=True)
class TurnCredential:
    """One participant's TURN username and password, as in a W3C ``RTCIceServer``."""

    username: str
    """``"<expiry unix time>:<user id>"``."""

    credential: str
    """``base64(hmac-sha1(secret, username))``."""

    expires_at: int
    """Unix time after which coturn refuses it."""


@dataclass(frozen=True)
class TurnSecret:
    """The shared secret (``SANKE_TURN_SECRET``) and the lifetime of what it mints (``SANKE_TURN_TTL_SECONDS``)."""

    secret: str = field(repr=False)
    ttl_s: int = DEFAULT_TTL_S

    def __post_init__(self) -> None:
        secret = self.secret
        if not secret or secret != secret.strip() or any(c.isspace() for c in secret):
            raise ValueError(_both("SANKE_TURN_SECRET 不能为空，也不能含空白字符",
                                   "SANKE_TURN_SECRET must not be empty or contain white space"))
        if len(secret) < MIN_SECRET_CHARS or secret.lower() in _PLACEHOLDERS:
            raise ValueError(_both(
                f"SANKE_TURN_SECRET 太短或是占位符：至少 {MIN_SECRET_CHARS} 个字符，且与 coturn 的 static-auth-secret 相同",
                f"SANKE_TURN_SECRET is too short or a placeholder: at least {MIN_SECRET_CHARS} characters, "
                "the same as coturn's static-auth-secret"))
        if isinstance(self.ttl_s, bool) or not isinstance(self.ttl_s, int) \
                or not MIN_TTL_S <= self.ttl_s <= MAX_TTL_S:
            raise ValueError(_both(
                f"SANKE_TURN_TTL_SECONDS 必须是 {MIN_TTL_S} 到 {MAX_TTL_S} 之间的整数秒（现在是 {self.ttl_s!r}）",
                f"SANKE_TURN_TTL_SECONDS must be a whole number of seconds from {MIN_TTL_S} to {MAX_TTL_S} "
                f"(not {self.ttl_s!r})"))

    @classmethod
    def from_strings(cls, secret: str | None, ttl_s: str | int | None) -> TurnSecret | None:
        """From environment-style values; ``None`` when no secret is set (a lifetime alone is ignored)."""
        if secret is None or not secret.strip():
            return None
        if ttl_s is None or (isinstance(ttl_s, str) and not ttl_s.strip()):
            return cls(secret.strip(), DEFAULT_TTL_S)
        if isinstance(ttl_s, str):
            try:
                ttl_s = int(ttl_s.strip())
            except ValueError:
                raise ValueError(_both(
                    f"SANKE_TURN_TTL_SECONDS 必须是整数秒，不是 {ttl_s!r}",
                    f"SANKE_TURN_TTL_SECONDS must be a whole number of seconds, not {ttl_s!r}")) from None
        return cls(secret.strip(), ttl_s)

    def mint(self, user: str | int, now: float) -> TurnCredential:
        """The credential of ``user`` (a user id; no ``:`` in it) valid from ``now`` for ``ttl_s`` seconds."""
        user = str(user)
        if not user or ":" in user:
            raise ValueError(f"a TURN user must be non-empty and without ':', not {user!r}")
        expires_at = int(now) + self.ttl_s
        username = f"{expires_at}:{user}"
        return TurnCredential(username, rest_api_credential(self.secret, username), expires_at)


def rest_api_credential(secret: str, username: str) -> str:
    """coturn's TURN REST API password for ``username``: ``base64(hmac-sha1(secret, username))``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


__all__ = ("DEFAULT_TTL_S", "MAX_TTL_S", "MIN_SECRET_CHARS", "MIN_TTL_S", "TurnCredential", "TurnSecret",
           "rest_api_credential")
