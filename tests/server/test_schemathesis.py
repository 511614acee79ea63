"""The API answers as its OpenAPI says: schemathesis over every operation, as an admin and a researcher.

Every operation of ``/openapi.json`` gets a few generated requests, valid ones (positive) from
both accounts and broken ones (negative) from the admin, first with ids as they come and then
with the ids of real rows (a lesson that was recorded and evaluated, its series, school,
classroom...), so the detail answers are read too, not only their 404s. Each answer must be no server error (5xx) and
conform to the response schema the OpenAPI declares for its status code (formats included:
a ``date-time`` must carry its offset). It runs in-process against its own copy of the demo
data (SQLite), reads first and writes last, so nothing else in the suite sees what it did.
Generation is derandomized: the same requests on every run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given, reject, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import func, select

from scheduler.models import (
    DemandOrder,
    LessonInstance,
    LessonSeries,
    Pairing,
    PeriodScheme,
    Region,
    School,
    Term,
    User,
)
from scheduler.patrol_models import Evaluation, EvaluationSnapshot, RubricTemplate
from scheduler.recordings_models import Recording
from server.core.config import Settings
from server.core.db import make_engine, make_session_factory
from tests.conftest import TEST_SECRET
from tests.utils.factory import token_for
from tests.utils.sanke_proc import DEMO_AT, copy_data, demo_data

PROBES = {"admin": "系统管理员", "researcher_city": "市教研员"}
"""The demo's accounts the probe signs in as: the system admin (every route, every scope) and the
city's researcher (patrol, records and reports of a whole city)."""

EXAMPLES = int(os.environ.get("SANKE_SCHEMATHESIS_EXAMPLES", "3"))
"""Generated requests per operation, per mode, per account: with 3, about 1,300 requests, 20-40 s on
an idle 2-core machine and up to two minutes on a loaded one (the demo data is loaded once per session
and shared with the other tests that use it)."""

CHECKS = [not_a_server_error, response_schema_conformance]

SKIPPED = {
    "POST /api/v1/recordings/{recording_id}/compose": "encodes H.264 in the API process for tens of seconds: "
                                                      "tests/records covers composing",
}

@dataclass
class Probed:
    client: TestClient
    schema: Any
    headers: dict[str, dict[str, str]]
    known: dict[str, list[int]]
    """Path parameter -> ids of real rows, all inside both accounts' scope."""
    probe_user_ids: set[int]


def _first(session, column, *where) -> int | None:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.min(column)).where(*where))


def _known_ids(session) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    recorded = _first(session, Recording.instance_id)
    evaluated = _first(session, Evaluation.instance_id)
    instance_ids = [i for i in {recorded, evaluated} if i is not None]
    lesson = session.get(LessonInstance, instance_ids[0]) if instance_ids else None
    series = session.get(LessonSeries, lesson.series_id) if lesson else None
    found: dict[str, Any] = {
        "instance_id": instance_ids,
        "series_id": [series.id] if series else [],
        "classroom_id": [series.main_classroom_id] if series else [],
        "school_id": [_first(session, School.id)],
        "region_id": [_first(session, Region.id)],
        "term_id": [_first(session, Term.id)],
        "scheme_id": [_first(session, PeriodScheme.id)],
        "pairing_id": [_first(session, Pairing.id)],
        "order_id": [_first(session, DemandOrder.id)],
        "recording_id": [_first(session, Recording.id)],
        "evaluation_id": [_first(session, Evaluation.id)],
        "snapshot_id": [_first(session, EvaluationSnapshot.id)],
        "template_id": [_first(session, RubricTemplate.id)],
        "user_id": [_first(session, User.id, User.username == "teacher")],
    }
    return {name: [i for i in ids if i is not None] for name, ids in found.items()}


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    from server.main import create_app

    source, _ = demo_data(tmp_path_factory.getbasetemp())
    data = copy_data(source, tmp_path_factory.mktemp("schemathesis") / "data")
    settings_ = Settings(data_dir=data, secret_key=TEST_SECRET)
    engine = make_engine(settings_.effective_database_url)
    with make_session_factory(engine)() as session:
        users = {u.username: u for u in session.scalars(select(User).where(User.username.in_(PROBES)))}
        assert set(users) == set(PROBES), users
        headers = {name: {"Authorization": f"Bearer {token_for(u, TEST_SECRET)}"} for name, u in users.items()}
        known = _known_ids(session)
        probe_user_ids = {u.id for u in users.values()}
    engine.dispose()
    assert known["instance_id"] and known["recording_id"] and known["evaluation_id"], known
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("scheduler.clock.now", lambda: DEMO_AT)  # the demo's "now": its term is in progress
        app = create_app(settings_, migrate=True, run_lifecycle=False)
        schema = schemathesis.openapi.from_dict(app.openapi())
        with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
            yield Probed(client, schema, headers, known, probe_user_ids)


def _send(client: TestClient, case: Any, headers: dict[str, str]) -> Any:
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    for unused in ("verify", "timeout", "allow_redirects", "auth"):
        kw.pop(unused, None)
    if not kw.get("cookies"):
        kw.pop("cookies", None)
    if isinstance(kw.get("data"), (bytes, str)):
        kw["content"] = kw.pop("data")
    try:
        request = client.build_request(**kw)
        request.read()  # a multipart body is a stream: read it so the checks can see what was sent
    except (TypeError, AttributeError):
        reject()  # a broken multipart part (a number for a file) that no HTTP client can encode
    return client.send(request)


def _run(probed: Probed, who: str, operation: Any, mode: Any, path_parameters: dict[str, int] | None,
         failures: list[str]) -> None:
    headers = probed.headers[who]
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=True)
    @given(strategy)
    def check(case: Any) -> None:
        # The probing accounts stay as they are (a PATCH of their own user could disable them).
        assume(case.path_parameters is None or case.path_parameters.get("user_id") not in probe_ids)
        response = _send(probed.client, case, headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    probe_ids = probed.probe_user_ids
    try:
        check()
    except Unsatisfiable:
        pass  # nothing of this operation can be made invalid (negative mode) or every draw was a probe account
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure of every operation is reported together
        where = f" with {path_parameters}" if path_parameters else ""
        failures.append(f"--- {who} {operation.label} ({mode.value}{where}):\n{str(exc)[:3000]}")


def test_every_operation_answers_as_declared(probed: Probed) -> None:
    operations = [r.ok() for r in probed.schema.get_all_operations()]
    assert len(operations) > 90, "the OpenAPI lost its operations"
    reads = [op for op in operations if op.method.upper() == "GET"]
    writes = [op for op in operations if op.method.upper() != "GET" and op.label not in SKIPPED]
    failures: list[str] = []
    for operation, who, mode in itertools.product(reads + writes, PROBES, GenerationMode):
        if mode is GenerationMode.NEGATIVE and who != "admin":
            continue  # broken requests are refused alike for anyone: once is enough
        _run(probed, who, operation, mode, None, failures)
        names = [p.name for p in operation.path_parameters]
        if names and all(probed.known.get(n) for n in names) and mode is GenerationMode.POSITIVE:
            for k in range(max(len(probed.known[n]) for n in names)):
                ids = {n: probed.known[n][k % len(probed.known[n])] for n in names}
                _run(probed, who, operation, mode, ids, failures)
    assert not failures, f"{len(failures)} operations answered against their schema or failed:\n" + "\n".join(failures)
