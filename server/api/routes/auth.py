"""Login and the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from scheduler.models import User
from server.api.deps import CurrentUser, SessionDep, SettingsDep
from server.api.errors import ApiError
from server.api.routes.users import UserPublic
from server.core.security import create_access_token, verify_password

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str
    password: str




class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserPublic


@router.post("/login", response_model=TokenOut)
def login(body: LoginIn, session: SessionDep, settings: SettingsDep) -> TokenOut:
    user = session.scalar(select(User).where(User.username == body.username))
    if user is None or not user.is_active or not verify_password(user.password_hash, body.password):
        raise ApiError(401, "bad_credentials", "用户名或密码错误")
    ttl = settings.access_token_minutes * 60
    token = create_access_token(user.id, user.role.value, settings.effective_secret_key(), ttl)
    return TokenOut(access_token=token, expires_in=ttl, user=UserPublic.model_validate(user))


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
