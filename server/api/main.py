"""Assembles the resource routers under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.routes import (
    audit,
    auth,
    classrooms,
    demand_orders,
    hls,
    lessons,
    nodes,
    pairings,
    patrol,
    period_schemes,
    quizzes,
    recordings,
    records,
    regions,
    reports,
    research,
    schools,
    series,
    slots,
    teachers,
    terms,
    timetable,
    users,
    webhooks,
)

api_router = APIRouter()
for module in (auth, regions, schools, classrooms, users, pairings, terms, period_schemes, series, lessons,
               audit, timetable, demand_orders, patrol, records, reports, recordings, hls, nodes,
               webhooks, quizzes, slots, teachers, research):
    api_router.include_router(module.router)
