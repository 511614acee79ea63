"""Placeholder router for /regions (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/regions", tags=["regions"])
