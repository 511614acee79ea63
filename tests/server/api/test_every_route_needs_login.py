"""Every API route except login answers 401 without a token, and 401 with a forged one."""

from __future__ import annotations

import re

import jwt

PUBLIC = {("POST", "/api/v1/auth/login")}


def _routes(app):
    """Every operation of the OpenAPI schema under /api/v1 (the schema lists every route)."""
    for path, ops in app.openapi()["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method in ops:
            if (method.upper(), path) not in PUBLIC:
                yield method.upper(), re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_answers_401_without_a_token(client, app):
    routes = list(_routes(app))
    assert len(routes) > 50
    for method, path in routes:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["code"] in ("not_authenticated", "token_invalid"), (method, path)


def test_every_route_answers_401_to_a_forged_token(client, app, world):
    forged = jwt.encode({"sub": str(world.sysadmin.id), "typ": "access", "exp": 4102444800},
                        "not-the-servers-key-not-the-servers-key", "HS256")
    for method, path in _routes(app):
        r = client.request(method, path, headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401, (method, path, r.status_code)


def test_audit_trail_needs_staff_in_scope(client, world, auth):
    from tests.server.api.routes.test_lessons import book

    sid = book(client, world, auth)
    q = {"entity": "series", "entity_id": sid}
    assert client.get("/api/v1/audit", params=q, headers=auth(world.terminal_main)).status_code == 403
    assert client.get("/api/v1/audit", params=q, headers=auth(world.student)).status_code == 403
    assert client.get("/api/v1/audit", params=q, headers=auth(world.researcher_b)).status_code == 403
    assert client.get("/api/v1/audit", params=q, headers=auth(world.admin_b)).status_code == 403
    r = client.get("/api/v1/audit", params=q, headers=auth(world.researcher_a))
    assert r.status_code == 200 and r.json()[0]["action"] == "book"
