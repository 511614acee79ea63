"""FastAPI dependencies as named types: the DB session, the caller, the caller's scope.

The caller is the user of a valid access token, active, whose ``token_version``
is still the one in the token (a password reset or a deactivation revokes it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from scheduler.access import Scope, scope_of
from scheduler.models import Role, User
from server.api.errors import ApiError
from server.core.config import Settings
from server.core.db import session_scope
from server.core.security import TokenError, decode_access_token

_bearer = HTTPBearer(auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: committed when the handler succeeds, rolled back otherwise."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if creds is None or creds.scheme.lower() != "bearer":
        raise ApiError(401, "not_authenticated", "请先登录")
    try:
        claims = decode_access_token(creds.credentials, settings.effective_secret_key())
    except TokenError as exc:
        raise ApiError(401, exc.code, exc.message) from exc
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise ApiError(401, "token_invalid", "账号不存在或已停用")
    if user.token_version != claims.token_version:  # the password was reset or the account disabled since
        raise ApiError(401, "token_revoked", "登录凭证已失效，请重新登录")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_scope(session: SessionDep, user: CurrentUser) -> Scope:
    return scope_of(session, user)


ScopeDep = Annotated[Scope, Depends(get_scope)]


def require_roles(*roles: Role):  # type: ignore[no-untyped-def]
    """Dependency: the caller must have one of ``roles`` (403 otherwise)."""

    def check(scope: ScopeDep) -> Scope:
        if scope.role not in roles:
            raise ApiError(403, "forbidden", "当前角色无权执行此操作")
        return scope

    return check


AdminScope = Annotated[Scope, Depends(require_roles(Role.admin))]
StaffScope = Annotated[Scope, Depends(require_roles(Role.admin, Role.teacher, Role.researcher))]
"""Staff: people who read timetables and records (not terminals, not students)."""
