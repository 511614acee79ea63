"""Placeholder router for /demand-orders (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/demand-orders", tags=["demand-orders"])
