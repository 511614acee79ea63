"""Placeholder router for /series (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/series", tags=["series"])
