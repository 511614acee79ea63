"""The API docs (``/docs``) served entirely by SanKe: Swagger UI from a packaged copy, no CDN.

Schools are often offline, so the page must not load anything from another host.  The Swagger UI
files come from the ``swagger-ui-bundle-v2`` package (``swagger_ui_bundle.swagger_ui_path``) and
are served under ``/docs/assets``; ReDoc (which FastAPI loads from a CDN) is not offered.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


def swagger_ui_dir() -> Path:
    """The folder of the packaged Swagger UI files (``swagger-ui-bundle.js``, ``swagger-ui.css``)."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def install(app: FastAPI) -> None:
    """Add ``/docs`` and its assets to an app created with ``docs_url=None, redoc_url=None``.

    Call before mounting anything at ``/``.
    """
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_dir()), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API 文档",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_ui_parameters={"validatorUrl": None},  # no online validator
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
