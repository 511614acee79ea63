"""Passwords (argon2) and signed tokens (JWT, HS256).

Three token types share one key and are told apart by ``typ``: an *access*
token proves who is calling the API; a *join* token binds one user to one
lesson instance in one lesson role and lives only a couple of minutes; a
*feed* token lets a calendar app read that user's iCalendar feeds and nothing
else, lives long, and dies when the user's ``feed_version`` is bumped.
Access and join tokens carry the user's ``token_version`` (``tv``): bumping
it (password reset, deactivation) revokes every one issued before.

This module signs and checks; it does not look users up, count failed logins
(``scheduler.logins``) or remember used join tokens (``scheduler.join_tokens``).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _stand_in_hash() -> str:
    """A hash of a random password, made with the same parameters as real ones."""
    return _hasher.hash(secrets.token_urlsafe(24))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``.  ``None`` (no such account) checks the
    password against a stand-in hash and returns False: the same work as for an existing
    account, so the time taken does not tell whether a username exists."""
    try:
        ok = _hasher.verify(password_hash or _stand_in_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or of the wrong type."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _encode(claims: dict[str, Any], key: str, ttl_seconds: int) -> str:
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + ttl_seconds, "jti": uuid.uuid4().hex}, key, _ALGORITHM)


def _decode(token: str, key: str, typ: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub", "typ"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token_expired", "登录凭证已过期，请重新登录") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("token_invalid", "登录凭证无效") from exc
    if claims.get("typ") != typ:
        raise TokenError("token_invalid", "登录凭证类型不符")
    return claims


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    token_version: int
    """The user's ``token_version`` when the token was issued (0 for tokens without ``tv``)."""


def create_access_token(user_id: int, role: str, key: str, ttl_seconds: int, token_version: int = 0) -> str:
    return _encode({"sub": str(user_id), "role": role, "typ": "access", "tv": token_version}, key, ttl_seconds)


def decode_access_token(token: str, key: str) -> AccessClaims:
    claims = _decode(token, key, "access")
    try:
        return AccessClaims(int(claims["sub"]), int(claims.get("tv", 0)))
    except (TypeError, ValueError) as exc:
        raise TokenError("token_invalid", "登录凭证无效") from exc


@dataclass(frozen=True)
class JoinClaims:
    user_id: int
    instance_id: int
    lesson_role: str
    """``main``, ``receiving``, ``student`` or ``observer``."""
    classroom_id: int | None
    expires_at: int
    token_version: int = 0
    """The user's ``token_version`` when the token was issued."""
    jti: str = ""
    """The token's unique id (set when decoding): what ``scheduler.join_tokens`` remembers once used."""


def create_join_token(claims: JoinClaims, key: str) -> str:
    body = {
        "sub": str(claims.user_id),
        "typ": "join",
        "lesson": claims.instance_id,
        "lesson_role": claims.lesson_role,
        "classroom": claims.classroom_id,
        "tv": claims.token_version,
    }
    now = int(time.time())
    return _encode(body, key, max(1, claims.expires_at - now))


def decode_join_token(token: str, key: str) -> JoinClaims:
    c = _decode(token, key, "join")
    try:
        classroom = c.get("classroom")
        jti = str(c["jti"])
        if not 0 < len(jti) <= 64:
            raise ValueError("jti")
        return JoinClaims(int(c["sub"]), int(c["lesson"]), str(c["lesson_role"]),
                          None if classroom is None else int(classroom), int(c["exp"]),
                          int(c.get("tv", 0)), jti)
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError("token_invalid", "入会凭证无效") from exc


def create_feed_token(user_id: int, feed_version: int, key: str, ttl_seconds: int) -> str:
    return _encode({"sub": str(user_id), "typ": "feed", "fv": feed_version}, key, ttl_seconds)


def decode_feed_token(token: str, key: str) -> tuple[int, int]:
    """(user id, feed version) of a feed token."""
    claims = _decode(token, key, "feed")
    try:
        return int(claims["sub"]), int(claims["fv"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError("token_invalid", "订阅凭证无效") from exc
