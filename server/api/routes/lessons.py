"""Placeholder router for /lessons (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/lessons", tags=["lessons"])
