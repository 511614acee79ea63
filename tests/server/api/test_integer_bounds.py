"""Integers the database cannot hold: every integer parameter and JSON body field of the OpenAPI answers 422, never 500.

SQLite binds 64-bit signed integers only (a larger one raised ``OverflowError``, a 500, on 86 of 103
parameters, and on ids in bodies such as ``POST /series/check``'s ``term_id``); PostgreSQL's id
columns are 32-bit ``INTEGER`` (2**31 was a 500 there).  Each parameter is sent 2**31, 2**63 and
2**64, and each integer field of a JSON body (nested in lists of objects too) 2**64, by a signed-in
system admin, on both engines, and must be refused by the request validation, naming it; the
largest id both engines hold is a plain 404.
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


def _body_fields(app: Any) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(method, path template, a body holding 2**64, the error's loc) for every integer field of every JSON body."""
    spec = app.openapi()
    schemas = spec["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        for option in [schema, *schema.get("anyOf", [])]:
            if "$ref" in option:
                return schemas[option["$ref"].rsplit("/", 1)[-1]]
        return schema

    def probes(schema: dict[str, Any], depth: int = 0) -> list[tuple[Any, list[str]]]:
        out: list[tuple[Any, list[str]]] = []
        for name, prop in resolve(schema).get("properties", {}).items():
            if prop.get("type") == "array" and _is_int(prop.get("items", {})):
                out.append(({name: [7, 2**64]}, [name, "1"]))
            elif _is_int(prop):
                out.append(({name: 2**64}, [name]))
            elif depth < 2 and resolve(prop).get("properties"):
                out += [({name: value}, [name, *loc]) for value, loc in probes(prop, depth + 1)]
            elif depth < 2 and prop.get("type") == "array" and resolve(prop.get("items", {})).get("properties"):
                out += [({name: [value]}, [name, "0", *loc]) for value, loc in probes(prop["items"], depth + 1)]
        return out

    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {})
            if path.startswith("/api/v1") and "application/json" in content:
                out += [(method.upper(), path, body, ["body", *loc])
                        for body, loc in probes(content["application/json"]["schema"])]
    return out


def test_every_integer_field_of_a_json_body_refuses_what_the_database_cannot_hold(
        app: Any, world: Any, auth: Any) -> None:
    fields = _body_fields(app)
    assert len(fields) > 40  # the walk found them
    admin = auth(world.sysadmin)
    failures = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path, body, loc in fields:
            url = re.sub(r"\{([^}]+)\}", lambda m: FILLER.get(m[1], "1"), path)
            r = client.request(method, url, json=body, headers=admin)
            if not (r.status_code == 422 and any(e["loc"] == loc and "超出整数范围" in e["reason"]
                                                 for e in r.json().get("errors", []))):
                failures.append((method, path, loc, r.status_code, r.text[:120]))
    assert failures == [], f"{len(failures)} of {len(fields)}: {failures[:5]}"


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


def test_a_whole_booking_with_one_id_too_big_is_a_422(app: Any, world: Any, auth: Any) -> None:
    """A body valid in every other field: the id reached the database and was a 500 before."""
    body = {"kind": "dedicated", "title": "三年级数学", "subject": "数学", "grade": "三年级", "term_id": world.term.id,
            "main_classroom_id": world.main_room.id, "main_teacher_id": world.teacher.id, "weekday": 2,
            "period_from": 3, "receivers": [{"classroom_id": world.recv_room.id}]}
    with TestClient(app, raise_server_exceptions=False) as client:
        ok = client.post("/api/v1/series/check", json=body, headers=auth(world.urban_admin))
        assert ok.status_code == 200 and ok.json()["ok"] is True, ok.text
        for key in ("term_id", "main_classroom_id", "main_teacher_id"):
            r = client.post("/api/v1/series/check", json={**body, key: 2**64}, headers=auth(world.urban_admin))
            assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", key], (key, r.status_code)
        r = client.post("/api/v1/series/check", json={**body, "receivers": [{"classroom_id": 2**40}]},
                        headers=auth(world.urban_admin))
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "receivers", "0", "classroom_id"]
