"""Placeholder router for /pairings (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/pairings", tags=["pairings"])
