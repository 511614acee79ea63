"""Small helpers shared by the route tests."""

from __future__ import annotations

from scheduler.models import Region, Role, User
from tests.utils.factory import add_user

API = "/api/v1"


def district_admin(session_factory, region: Region,  # type: ignore[no-untyped-def]
                   username: str = "admin_district") -> User:
    """A bureau admin of one district (the world only has a city-level one)."""
    with session_factory() as s:
        user = add_user(s, username, Role.admin, region=s.get(Region, region.id), name="区教育局管理员")
        s.commit()
        return user


def assert_error(r, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert body["message"]
    return body
