"""Placeholder router for /users (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/users", tags=["users"])
