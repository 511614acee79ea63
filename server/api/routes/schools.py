"""Placeholder router for /schools (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/schools", tags=["schools"])
