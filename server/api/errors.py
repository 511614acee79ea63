"""Every error leaves the API as JSON ``{code, message}`` (plus details where useful)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scheduler import errors as domain


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


_STATUS = {
    domain.NotFound: 404,
    domain.Invalid: 422,
    domain.Forbidden: 403,
    domain.InvalidState: 409,
    domain.Conflict: 409,
}


def _status_for(exc: domain.SchedulerError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400


status_for = _status_for
"""The HTTP status a domain error leaves the API with (for answers that report a refusal without raising it)."""


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429 and "retry_after" in exc.extra:
            headers = {"Retry-After": str(exc.extra["retry_after"])}
        return JSONResponse({"code": exc.code, "message": exc.message, **exc.extra}, exc.status, headers=headers)

    @app.exception_handler(domain.SchedulerError)
    async def _domain_error(_req: Request, exc: domain.SchedulerError) -> JSONResponse:
        return JSONResponse(exc.payload(), _status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "reason": str(e.get("msg", ""))} for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "reason": ""}
        where = ".".join(first["loc"][1:]) or "请求"
        return JSONResponse(
            {"code": "validation_error", "message": f"请求参数有误：{where} {first['reason']}", "errors": errors}, 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "资源不存在", 405: "不支持的请求方法", 413: "上传内容过大"}
        return JSONResponse({"code": f"http_{exc.status_code}", "message": messages.get(exc.status_code, str(exc.detail))},
                            exc.status_code)
