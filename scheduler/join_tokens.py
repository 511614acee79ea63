"""Used join tokens: a join token admits once, then only resumes the session it created.

The signaling socket ``claim``s a token's id, naming the session it is about
to create or resume, before it lets anyone in.  The first claim wins (should
the session turn out another, the socket ``bind``s the token to it); a later
claim of the same token learns that session, and
the socket accepts the token again only to resume that very session (a page
reconnecting after a network drop).  After ``leave``, or once the session is
gone, the token admits nobody.  Rows are kept until the token expires, in the
database, so every server process refuses the same tokens.

This module does not decode tokens (``server.core.security``) or know sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.auth_models import UsedJoinToken


@dataclass(frozen=True)
class Claim:
    first_use: bool
    """True: nobody used the token before; it may create a session."""
    session_id: str | None
    """The session the token is bound to: the one this claim named, or, when used before, the one
    the first use named or bound (``None``: none)."""


def claim(session: Session, *, jti: str, user_id: int, session_id: str, expires_at: int, now: int) -> Claim:
    """Mark the token used by ``session_id`` (flushed, not committed); ``now`` and ``expires_at``
    are Unix seconds."""
    session.execute(delete(UsedJoinToken).where(UsedJoinToken.expires_at < now))
    try:
        with session.begin_nested():  # two sockets presenting the same token at once: one insert wins
            session.add(UsedJoinToken(jti=jti, user_id=user_id, session_id=session_id, expires_at=expires_at))
        return Claim(first_use=True, session_id=session_id)
    except IntegrityError:
        pass
    bound = session.scalar(select(UsedJoinToken.session_id).where(UsedJoinToken.jti == jti))
    return Claim(first_use=False, session_id=bound)


def bind(session: Session, jti: str, session_id: str) -> None:
    """The token created (or resumed) ``session_id``: from now on it can only resume that session."""
    session.execute(update(UsedJoinToken).where(UsedJoinToken.jti == jti).values(session_id=session_id))
