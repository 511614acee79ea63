"""Integer parameters at the API's edge: each fits the id columns of both databases, or the request is a 422.

Ids and counts arrive in paths and queries and become Python ``int``s of any size.  SQLite binds
64 bits at most (``OverflowError`` above 2**63), and PostgreSQL's id columns are ``INTEGER``, 32
bits (``NumericValueOutOfRange`` above 2**31): both were 500s.  ``refuse_oversized_integers`` is
the first dependency of every API route (``server.main``): it reads the integer parameters the
matched route and its dependencies declare, parses each value as the request validation will,
and answers 422 ``validation_error`` for one outside ``INT_MIN`` … ``INT_MAX`` (the 32-bit range
every id column holds on both engines; no id, offset or count of SanKe comes near it) before any
other dependency (the login check included) or handler runs.  Values that are not integers at
all are left to the request validation.

Owns only that bound: it must not read the database, change a value or refuse anything else.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
"""PostgreSQL's ``INTEGER``, the narrowest id column of the two engines."""

_INT = TypeAdapter(int)
_ATTR = "_sanke_integer_params"
"""Where a route keeps its integer parameters, (``path`` or ``query``, name) pairs, found on its first request."""


def refuse_oversized_integers(request: Request) -> None:
    """Raise a 422 for any integer path or query parameter of the matched route outside ``INT_MIN`` … ``INT_MAX``."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    fields = getattr(route, _ATTR, None)
    if fields is None:
        fields = _integer_params(route)
        setattr(route, _ATTR, fields)
    errors = []
    for where, name in fields:
        raws = [request.path_params.get(name)] if where == "path" else request.query_params.getlist(name)
        for raw in raws:
            try:
                value = _INT.validate_python(raw)
            except ValidationError:
                continue  # not an integer: the request validation says so
            if not INT_MIN <= value <= INT_MAX:
                errors.append({"type": "int_range", "loc": (where, name), "input": raw,
                               "msg": f"超出整数范围（{INT_MIN} 至 {INT_MAX}）"})
    if errors:
        raise RequestValidationError(errors)


def _integer_params(route: APIRoute) -> tuple[tuple[str, str], ...]:
    found: dict[tuple[str, str], None] = {}
    todo: list[Dependant] = [route.dependant]
    while todo:
        dependant = todo.pop()
        for where, fields in (("path", dependant.path_params), ("query", dependant.query_params)):
            found.update(((where, f.alias), None) for f in fields if _has_int(f.field_info.annotation))
        todo.extend(dependant.dependencies)
    return tuple(found)


def _has_int(tp: Any) -> bool:
    """``int`` alone, in a union (``int | None``) or in a list of them (``bool`` is not an integer here)."""
    if tp is int:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _has_int(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType, list, set, frozenset, tuple):
        return any(_has_int(a) for a in typing.get_args(tp))
    return False
