"""Placeholder router for /audit (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/audit", tags=["audit"])
