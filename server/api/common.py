"""Small pieces shared by the resource routers: offset/limit paging and PATCH bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel

MAX_LIMIT = 200


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


def _page(
    offset: Annotated[int, Query(ge=0, description="跳过的条数")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="每页条数")] = 50,
) -> Page:
    return Page(offset, limit)


PageDep = Annotated[Page, Depends(_page)]
"""``?offset=0&limit=50``; listings answer ``{data, count}`` with ``count`` over all pages."""


def changes(body: BaseModel, *, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a PATCH body actually sent, as keyword arguments for a ``directory.update_*`` function.

    A ``null`` means "clear it" for the ``nullable`` fields and "leave it" for
    the others (their columns cannot be empty).
    """
    sent = body.model_dump(exclude_unset=True)
    return {k: v for k, v in sent.items() if v is not None or k in nullable}
