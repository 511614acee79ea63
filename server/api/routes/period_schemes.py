"""Placeholder router for /period-schemes (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/period-schemes", tags=["period-schemes"])
