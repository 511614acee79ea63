"""Tables that back sign-in and token checks: failed-login counters and used join tokens.

``LoginThrottle`` counts recent failed logins per account name and per client
address (``scheduler.logins`` holds the backoff rules); ``UsedJoinToken``
remembers each join token the signaling socket admitted and the session it
created (``scheduler.join_tokens``).  Kept in the database so that every server
process sees the same counts and the same used tokens.  Migration
``server/migrations/versions/0008_login_throttle_token_version.py``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.models import Base


class LoginThrottle(Base):
    """Failed logins under one key (``account:<sha256 of the lower-cased name>`` or ``address:<ip>``)."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    """Failures since the last success (accounts) or since a quiet period (see ``scheduler.logins``)."""
    last_failure_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime)
    """Until then every login under this key is refused without checking the password."""


class UsedJoinToken(Base):
    """A join token that admitted someone: it may only resume the session it created."""

    __tablename__ = "used_join_token"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    session_id: Mapped[str | None] = mapped_column(String(64))
    """The signaling session the token created or resumed."""
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    """The token's ``exp`` (Unix seconds): after it the row is useless and is deleted."""
