"""Integers at the API's edge: each one a route declares fits the id columns of both databases, or the request is a 422.

Ids and counts arrive in paths, queries and JSON bodies and become Python ``int``s of any size.
SQLite binds 64 bits at most (``OverflowError`` above 2**63), and PostgreSQL's id columns are
``INTEGER``, 32 bits (``NumericValueOutOfRange`` above 2**31): both were 500s.
``refuse_oversized_integers`` is the first dependency of every API route (``server.main``): it
reads the integer parameters the matched route and its dependencies declare — path, query and
the integer fields of its JSON body model, nested models and lists included — parses each value
as the request validation will, and answers 422 ``validation_error`` for one outside
``INT_MIN`` … ``INT_MAX`` (the 32-bit range every id column holds on both engines; no id,
offset or count of SanKe comes near it) before any other dependency (the login check included)
or handler runs.  Values that are not integers at all are left to the request validation.

Owns only that bound: it must not read the database, change a value or refuse anything else.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
"""PostgreSQL's ``INTEGER``, the narrowest id column of the two engines."""

_INT = TypeAdapter(int)
_LEAF = "int"
"""A body shape: ``_LEAF`` (an integer), a dict of field name -> shape (a model), or a ``_Items`` (a list)."""


@dataclass(frozen=True)
class _Items:
    shape: Any


@dataclass(frozen=True)
class _RouteIntegers:
    params: tuple[tuple[str, str], ...]
    """(``path`` or ``query``, name) of each integer parameter."""
    body: Any
    """The integer fields of the JSON body (a shape), or None."""


_ATTR = "_sanke_route_integers"
"""Where a route keeps its ``_RouteIntegers``, found on its first request."""


async def refuse_oversized_integers(request: Request) -> None:
    """Raise a 422 for any integer the matched route declares that lies outside ``INT_MIN`` … ``INT_MAX``."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = getattr(route, _ATTR, None)
    if known is None:
        known = _route_integers(route)
        setattr(route, _ATTR, known)
    errors: list[dict[str, Any]] = []
    for where, name in known.params:
        raws = [request.path_params.get(name)] if where == "path" else request.query_params.getlist(name)
        for raw in raws:
            _check(raw, _LEAF, (where, name), errors)
    if known.body is not None and "json" in request.headers.get("content-type", ""):
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None  # not JSON: the request validation says so
        _check(body, known.body, ("body",), errors)
    if errors:
        raise RequestValidationError(errors)


def _check(value: Any, shape: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> None:
    if shape == _LEAF:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return
        try:
            number = _INT.validate_python(value)
        except ValidationError:
            return  # not an integer: the request validation says so
        if not INT_MIN <= number <= INT_MAX:
            errors.append({"type": "int_range", "loc": loc, "input": value,
                           "msg": f"超出整数范围（{INT_MIN} 至 {INT_MAX}）"})
    elif isinstance(shape, dict) and isinstance(value, dict):
        for key, sub in shape.items():
            if key in value:
                _check(value[key], sub, (*loc, key), errors)
    elif isinstance(shape, _Items) and isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, shape.shape, (*loc, i), errors)


def _route_integers(route: APIRoute) -> _RouteIntegers:
    found: dict[tuple[str, str], None] = {}
    body: dict[str, Any] = {}
    todo: list[Dependant] = [route.dependant]
    while todo:
        dependant = todo.pop()
        for where, fields in (("path", dependant.path_params), ("query", dependant.query_params)):
            found.update(((where, f.alias), None) for f in fields
                         if _shape(f.field_info.annotation) in (_LEAF, _Items(_LEAF)))  # ?id=1&id=2: each one
        for f in dependant.body_params:
            shape = _shape(f.field_info.annotation)
            if shape is not None:
                body[f.alias] = shape
        todo.extend(dependant.dependencies)
    # one body parameter is the body itself, unless FastAPI embeds it under its name (as it does several)
    embed = getattr(route, "_embed_body_fields", None)
    if embed is None:
        embed = len(route.dependant.body_params) != 1 or bool(
            getattr(route.dependant.body_params[0].field_info, "embed", False))
    flat = len(body) == 1 and not embed
    return _RouteIntegers(tuple(found), next(iter(body.values())) if flat else (body or None))


def _shape(tp: Any, depth: int = 0) -> Any:
    """Where ``tp`` holds integers: ``_LEAF``, a dict for a model's fields, ``_Items`` for a list; None if nowhere."""
    if tp is int:
        return _LEAF
    if depth > 6:
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        fields = {}
        for name, info in tp.model_fields.items():
            sub = _shape(info.annotation, depth + 1)
            if sub is not None:
                alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
                fields[alias or name] = sub
        return fields or None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _shape(args[0], depth)
    if origin in (typing.Union, types.UnionType):
        return next((s for s in (_shape(a, depth) for a in args) if s is not None), None)
    if origin in (list, set, frozenset, tuple) and args:
        sub = _shape(args[0], depth + 1)
        return _Items(sub) if sub is not None else None
    return None
