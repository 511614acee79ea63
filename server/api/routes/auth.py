"""Login and the caller's own account.

A login under an account name or from a client address that failed too often
is refused with 429 until its wait has passed (``scheduler.logins``); every
failed password check is counted and audited.  An unknown name costs the same
password-hash work as a known one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from scheduler import clock, logins
from scheduler.models import User
from server.api.deps import CurrentUser, SessionDep, SettingsDep
from server.api.errors import ApiError
from server.api.routes.users import UserPublic
from server.core.security import create_access_token, verify_password

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=256)
    """Passwords are at most 128 characters; a longer one is refused before any hashing."""




class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserPublic


def _count_failure(request: Request, reason: str) -> None:
    """``sanke_login_failures_total{reason}`` on this node's ``/metrics`` (``server.core.metrics``)."""
    collector = getattr(request.app.state, "metrics", None)
    if collector is not None:
        collector.login_failures.labels(reason=reason).inc()


@router.post("/login", response_model=TokenOut, responses={
    401: {"description": "用户名或密码错误 (bad_credentials)"},
    429: {"description": "登录失败次数过多 (too_many_attempts); ``Retry-After`` says when to retry"}})
def login(body: LoginIn, request: Request, session: SessionDep, settings: SettingsDep) -> TokenOut:
    now = clock.now()
    address = request.client.host if request.client is not None else "unknown"
    try:
        logins.check(session, body.username, address, now)
    except logins.Throttled as exc:
        _count_failure(request, "throttled")
        raise ApiError(429, exc.code, exc.message, retry_after=exc.retry_after_s) from None
    user = session.scalar(select(User).where(User.username == body.username))
    password_ok = verify_password(user.password_hash if user is not None else None, body.password)
    if user is None or not user.is_active or not password_ok:
        reason = "unknown_user" if user is None else "inactive" if not user.is_active else "bad_password"
        logins.failed(session, username=body.username, address=address, user_id=user.id if user else None,
                      reason=reason, now=now)
        session.commit()  # kept although the request fails
        _count_failure(request, reason)
        raise ApiError(401, "bad_credentials", "用户名或密码错误")
    logins.clear_account(session, body.username)
    ttl = settings.access_token_minutes * 60
    token = create_access_token(user.id, user.role.value, settings.effective_secret_key(), ttl,
                                user.token_version)
    return TokenOut(access_token=token, expires_in=ttl, user=UserPublic.model_validate(user))


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
