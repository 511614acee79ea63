"""Assembles the resource routers under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.routes import auth

api_router = APIRouter()
api_router.include_router(auth.router)
