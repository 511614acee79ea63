"""/users: accounts, managed by admins within their scope.

A school admin manages the teachers, students, terminals and admins of their
school; a bureau admin also the researchers and admins of the regions they
cover; a system admin everyone.  Passwords are stored as argon2 hashes.  A
password reset or a deactivation revokes the account's tokens.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from scheduler import directory
from scheduler.models import Role, User
from server.api.common import PageDep, changes
from server.api.deps import AdminScope, SessionDep
from server.core.security import hash_password

router = APIRouter(prefix="/users", tags=["users"])


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    school_id: int | None
    region_id: int | None
    classroom_id: int | None
    is_active: bool


class UsersPublic(BaseModel):
    data: list[UserPublic]
    count: int


class UserCreate(BaseModel):
    """Where the account sits depends on its role: a terminal needs ``classroom_id``, a researcher
    ``region_id``, a teacher or student ``school_id``, an admin ``school_id``, ``region_id`` or neither."""

    username: str
    display_name: str
    password: str
    role: Role
    school_id: int | None = None
    region_id: int | None = None
    classroom_id: int | None = None


class UserUpdate(BaseModel):
    display_name: str | None = None
    is_active: bool | None = None
    password: str | None = None
    """A new password (password reset); at least 8 characters."""


@router.get("", response_model=UsersPublic)
def list_users(session: SessionDep, scope: AdminScope, page: PageDep, role: Role | None = None,
               school_id: int | None = None, is_active: bool | None = None, q: str | None = None) -> UsersPublic:
    """Accounts the caller manages; ``q`` matches part of the username or the name."""
    stmt = directory.user_query(scope, role=role, school_id=school_id, is_active=is_active, q=q)
    rows, count = directory.paginate(session, stmt, offset=page.offset, limit=page.limit)
    return UsersPublic(data=[UserPublic.model_validate(u) for u in rows], count=count)


@router.get("/{user_id}", response_model=UserPublic)
def get_user(user_id: int, session: SessionDep, scope: AdminScope) -> User:
    return directory.require_user(session, scope, user_id)


@router.post("", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, session: SessionDep, scope: AdminScope) -> User:
    return directory.create_user(session=session, scope=scope, hasher=hash_password, **body.model_dump())


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(user_id: int, body: UserUpdate, request: Request, session: SessionDep, scope: AdminScope) -> User:
    """Deactivating or resetting the password revokes the account's tokens at once (its next request
    gets 401 ``token_revoked``); deactivating also ends its sessions in live lessons."""
    user = directory.update_user(session=session, scope=scope, user_id=user_id, hasher=hash_password,
                                 **changes(body))
    if body.is_active is False:
        session.commit()  # durable before live lessons hear of it
        # sync handlers run in a worker thread: hand the publish to the event loop
        anyio.from_thread.run(request.app.state.bus.publish, directory.ACCOUNT_TOPIC,
                              {"type": "user_deactivated", "user_id": user.id})
    return user
