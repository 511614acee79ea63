"""Placeholder router for /timetable (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/timetable", tags=["timetable"])
