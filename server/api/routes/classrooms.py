"""Placeholder router for /classrooms (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/classrooms", tags=["classrooms"])
