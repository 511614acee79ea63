"""Integers the database cannot hold: every integer path and query parameter of the OpenAPI answers 422, never 500.

SQLite binds 64-bit signed integers only (a larger one raised ``OverflowError``, a 500, on 86 of 103
parameters); PostgreSQL's id columns are 32-bit ``INTEGER`` (2**31 was a 500 there).  Each parameter
is sent 2**31, 2**63 and 2**64 by a signed-in system admin, on both engines, and must be
refused by the request validation, naming it; the largest id both engines hold is a plain 404.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from server.api.int_bounds import INT_MAX

TOO_BIG = (2**31, 2**63, 2**64)
FILLER = {"entity": "series", "name": "camera-1.webm"}
"""Values for the required parameters that are not integers."""


def _is_int(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "integer":
        return True
    if schema.get("type") == "array":
        return _is_int(schema.get("items", {}))
    return any(_is_int(s) for s in schema.get("anyOf", []))


def _integer_params(app: Any) -> list[tuple[str, str, str, str]]:
    """(method, path template, where, name) of every integer parameter of every /api/v1 operation."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["in"] in ("path", "query") and _is_int(p["schema"]):
                    out.append((method.upper(), path, p["in"], p["name"]))
    return out


def _request(client: TestClient, headers: dict[str, str], method: str, path: str, where: str, name: str,
             value: int) -> Any:
    url = re.sub(r"\{([^}]+)\}", lambda m: str(value) if (where, m[1]) == ("path", name) else
                 FILLER.get(m[1], "1"), path)
    params = {name: str(value)} if where == "query" else {}
    return client.request(method, url, params=params, headers=headers)


def test_every_integer_parameter_refuses_what_the_database_cannot_hold(app: Any, world: Any, auth: Any) -> None:
    params = _integer_params(app)
    assert len(params) > 100  # the walk found them (103 when the issue was filed)
    admin = auth(world.sysadmin)
    failures = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path, where, name in params:
            for value in TOO_BIG:
                r = _request(client, admin, method, path, where, name, value)
                named = r.status_code == 422 and r.json()["code"] == "validation_error" and any(
                    e["loc"] == [where, name] for e in r.json()["errors"])
                if not named:
                    failures.append((method, path, where, name, value, r.status_code, r.text[:120]))
    assert failures == [], f"{len(failures)} of {len(TOO_BIG) * len(params)}: {failures[:5]}"


def test_the_largest_id_a_column_holds_is_just_not_found(client: Any, world: Any, auth: Any) -> None:
    for path in ("/api/v1/classrooms/{}", "/api/v1/series/{}", "/api/v1/lessons/{}", "/api/v1/recordings/{}"):
        r = client.get(path.format(INT_MAX), headers=auth(world.sysadmin))
        assert r.status_code == 404, (path, r.status_code, r.text)
    r = client.get("/api/v1/classrooms/99999999999999999999", headers=auth(world.sysadmin))
    assert r.status_code == 422 and "超出整数范围" in r.json()["message"]
