"""Placeholder router for /terms (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/terms", tags=["terms"])
