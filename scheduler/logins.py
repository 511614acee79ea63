"""Login backoff: failed logins counted per account name and per client address.

After ``Backoff.free`` failures under a key, further logins under it are refused
until a wait has passed, and the wait doubles with each failure after that (up
to ``max_wait``).  A successful login clears the account's count, not the
address's (an attacker's own account must not clear it), and so does an admin's
password reset; a count whose last
failure is older than ``forget_after`` starts over.  Account counts are kept
whether or not the name exists, so refusals do not tell which names do.  Every
failed password check is written to the audit trail (entity ``user``, action
``login_failed``; ``entity_id`` 0 for a name that matches no account).

The counts live in the database (``LoginThrottle``), so every server process
sees them.  This module does not check passwords (``server.core.security``) and
knows nothing of HTTP: the login route turns ``Throttled`` into 429.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler import audit
from scheduler.auth_models import LoginThrottle
from scheduler.errors import SchedulerError


@dataclass(frozen=True)
class Backoff:
    free: int
    """Failures allowed before the first wait."""
    first_wait: timedelta
    max_wait: timedelta
    forget_after: timedelta
    """A count whose last failure is older than this starts over."""

    def wait_after(self, failures: int) -> timedelta | None:
        """How long logins are refused after the ``failures``-th failure (None: not at all)."""
        if failures < self.free:
            return None
        doublings = min(failures - self.free, 20)
        return min(self.first_wait * (2 ** doublings), self.max_wait)


ACCOUNT = Backoff(free=5, first_wait=timedelta(seconds=30), max_wait=timedelta(hours=1),
                  forget_after=timedelta(hours=24))
"""One account: 5 tries, then 30 s, 1 min, 2 min, ... up to an hour between tries."""

ADDRESS = Backoff(free=30, first_wait=timedelta(seconds=30), max_wait=timedelta(minutes=15),
                  forget_after=timedelta(hours=1))
"""One client address (a whole school may sit behind one): 30 tries, then 30 s doubling up to 15 min."""


class Throttled(SchedulerError):
    """Too many failed logins under this account or address: refused until ``retry_at``."""

    code = "too_many_attempts"

    def __init__(self, retry_at: datetime, now: datetime) -> None:
        self.retry_at = retry_at
        self.retry_after_s = max(1, math.ceil((retry_at - now).total_seconds()))
        wait = (f"{self.retry_after_s} 秒" if self.retry_after_s < 60
                else f"{math.ceil(self.retry_after_s / 60)} 分钟")
        super().__init__(f"登录失败次数过多，请 {wait}后（{retry_at:%H:%M:%S}）再试")


def account_key(username: str) -> str:
    """The account's key: a digest of the lower-cased name (what was typed may be a password)."""
    digest = hashlib.sha256(username.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
    return f"account:{digest[:40]}"


def address_key(address: str) -> str:
    return f"address:{address[:80]}"


def check(session: Session, username: str, address: str, now: datetime) -> None:
    """Raise ``Throttled`` when the account or the address must wait (before any password check)."""
    blocked = session.scalars(select(LoginThrottle.blocked_until).where(
        LoginThrottle.key.in_((account_key(username), address_key(address))),
        LoginThrottle.blocked_until > now)).all()
    if blocked:
        raise Throttled(max(t for t in blocked if t is not None), now)


def _count(session: Session, key: str, policy: Backoff, now: datetime) -> LoginThrottle:
    """One more failure under ``key`` (the row locked for the rest of the transaction on PostgreSQL)."""
    for _ in range(2):
        row = session.scalars(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()).first()
        if row is None:
            try:
                with session.begin_nested():  # another process may insert the same key at once
                    row = LoginThrottle(key=key, failures=0, last_failure_at=now)
                    session.add(row)
            except IntegrityError:
                continue
        elif now - row.last_failure_at > policy.forget_after:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        wait = policy.wait_after(row.failures)
        row.blocked_until = now + wait if wait is not None else None
        return row
    raise RuntimeError(f"login_throttle row {key} could not be written")


def failed(session: Session, *, username: str, address: str, user_id: int | None, reason: str,
           now: datetime) -> None:
    """Count a failed login under the account and the address, and write it to the audit trail.

    ``reason``: ``bad_password``, ``unknown_user`` or ``inactive``."""
    purge(session, now)
    account = _count(session, account_key(username), ACCOUNT, now)
    source = _count(session, address_key(address), ADDRESS, now)
    blocked = [t for t in (account.blocked_until, source.blocked_until) if t is not None]
    audit.record(session, actor_id=None, entity="user", entity_id=user_id or 0, action="login_failed", at=now,
                 details={"username": username[:64], "address": address[:80], "reason": reason,
                          "account_failures": account.failures, "address_failures": source.failures,
                          "blocked_until": max(blocked).isoformat() if blocked else None})


def clear_account(session: Session, username: str) -> None:
    """Clear the account's count: after a successful login, or when an admin resets its password."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key(username)))


def purge(session: Session, now: datetime) -> None:
    """Delete counts that no longer matter: forgotten, and no longer blocked (``max_wait`` is
    shorter than ``forget_after``)."""
    stale = now - max(ACCOUNT.forget_after, ADDRESS.forget_after)
    session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < stale))
