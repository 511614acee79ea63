"""Passwords (argon2) and signed tokens (JWT, HS256).

Three token types share one key and are told apart by ``typ``: an *access*
token proves who is calling the API; a *join* token binds one user to one
lesson instance in one lesson role and lives only a couple of minutes; a
*feed* token lets a calendar app read that user's iCalendar feeds and nothing
else, lives long, and dies when the user's ``feed_version`` is bumped.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


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


def create_access_token(user_id: int, role: str, key: str, ttl_seconds: int) -> str:
    return _encode({"sub": str(user_id), "role": role, "typ": "access"}, key, ttl_seconds)


def decode_access_token(token: str, key: str) -> int:
    claims = _decode(token, key, "access")
    try:
        return int(claims["sub"])
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


def create_join_token(claims: JoinClaims, key: str) -> str:
    body = {
        "sub": str(claims.user_id),
        "typ": "join",
        "lesson": claims.instance_id,
        "lesson_role": claims.lesson_role,
        "classroom": claims.classroom_id,
    }
    now = int(time.time())
    return _encode(body, key, max(1, claims.expires_at - now))


def decode_join_token(token: str, key: str) -> JoinClaims:
    c = _decode(token, key, "join")
    try:
        return JoinClaims(int(c["sub"]), int(c["lesson"]), str(c["lesson_role"]),
                          c.get("classroom"), int(c["exp"]))
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
