"""The signed URLs of recording files (``/recordings/{id}/files/{name}?token=``): a ``<video>`` element
asks without a bearer header, so the URL itself must be the key. A fresh URL plays; an expired, a
forged or a borrowed one (another file, another recording, another kind of token) is refused with
its own status and a message for people. Expiry is tested by moving the signing clock, not by waiting."""

from __future__ import annotations

import base64
import json
import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from scheduler.recordings_models import Recording, RecordingStatus
from server.api.routes import recordings as routes
from server.core.security import create_access_token
from tests.conftest import TEST_SECRET
from tests.server.api.routes.helpers import assert_error
from tests.server.api.routes.test_recordings_api import setup


@pytest.fixture
def rec(client, world, auth, session_factory, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The recordings of ``test_recordings_api.setup`` and the student's file URLs of the famous-school one."""
    ids = setup(client, world, auth, session_factory, settings)
    return {**ids, "urls": urls(client, world, auth, ids["famous"])}


def urls(client, world, auth, recording_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/recordings/{recording_id}", headers=auth(world.student))
    assert r.status_code == 200, r.text
    return {f["source"]: f["url"] for f in r.json()["files"]}


def signed_at(monkeypatch: pytest.MonkeyPatch, seconds_ago: float) -> None:
    """URLs handed out from now on are signed as if ``seconds_ago`` earlier."""
    real = time.time
    monkeypatch.setattr(routes, "time", SimpleNamespace(time=lambda: real() - seconds_ago))


def test_a_fresh_url_plays_without_any_other_credential(client, rec):
    r = client.get(rec["urls"]["camera"])
    assert r.status_code == 200 and r.content == bytes(range(256)) * 12
    r = client.get(rec["urls"]["microphone"])
    assert r.status_code == 200 and r.content == b"\x1a\x45\xdf\xa3" * 250


def test_an_expired_url_is_refused_and_says_to_reload(client, world, auth, rec, monkeypatch):
    lifetime = routes.MEDIA_TOKEN_SECONDS
    signed_at(monkeypatch, lifetime - 60)  # a minute of its lifetime left: still plays
    almost = urls(client, world, auth, rec["famous"])["camera"]
    signed_at(monkeypatch, lifetime + 1)  # a second past its lifetime
    expired = urls(client, world, auth, rec["famous"])["camera"]
    monkeypatch.undo()

    assert client.get(almost).status_code == 200
    body = assert_error(client.get(expired), 401, "token_expired")
    assert body["message"] == "录播链接已过期，请刷新页面"
    assert_error(client.get(expired, headers={"Range": "bytes=0-99"}), 401, "token_expired")  # seeking too
    # reloading the details hands out a URL that plays again
    assert client.get(urls(client, world, auth, rec["famous"])["camera"]).status_code == 200


def _token(url: str) -> tuple[str, str]:
    base, token = url.split("?token=")
    return base, token


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_a_forged_url_is_refused(client, world, rec):
    base, token = _token(rec["urls"]["camera"])
    claims = _claims(token)
    assert_error(client.get(base), 401, "not_authenticated")
    for forged in (
        "forged",
        jwt.encode(claims, "another-key-0123456789abcdef-0123456789", "HS256"),  # not signed by this server
        jwt.encode(claims, TEST_SECRET + "x", "HS256"),  # a near guess of the key
        jwt.encode(claims, TEST_SECRET, "HS512"),  # another algorithm
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),  # the signature altered
    ):
        body = assert_error(client.get(f"{base}?token={forged}"), 401, "token_invalid")
        assert body["message"] == "录播访问凭证无效"

    # the claims changed to a longer life, signature kept: the signature no longer matches
    head, payload, sig = token.split(".")
    longer = {**claims, "exp": claims["exp"] + 365 * 86400}
    payload2 = base64.urlsafe_b64encode(json.dumps(longer).encode()).rstrip(b"=").decode()
    assert_error(client.get(f"{base}?token={head}.{payload2}.{sig}"), 401, "token_invalid")
    # an unsigned token ("alg": "none")
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_error(client.get(f"{base}?token={unsigned}"), 401, "token_invalid")


def test_another_kind_of_token_is_not_a_media_url(client, world, rec):
    base, _ = _token(rec["urls"]["camera"])
    login = create_access_token(world.student.id, "student", TEST_SECRET, 3600)  # the student's own login
    assert_error(client.get(f"{base}?token={login}"), 403, "forbidden")


def test_a_url_for_another_file_or_recording_is_refused(client, world, auth, rec, session_factory):
    base, camera = _token(rec["urls"]["camera"])
    _, microphone = _token(rec["urls"]["microphone"])
    body = assert_error(client.get(f"{base}?token={microphone}"), 403, "forbidden")  # a token is for one file
    assert body["message"] == "该凭证不能访问此文件"
    other = f"/api/v1/recordings/{rec['dedicated']}/files/camera-1.webm"
    assert_error(client.get(f"{other}?token={camera}"), 403, "forbidden")  # ...of one recording
    assert_error(client.get(base.replace("camera-1.webm", "microphone-1.webm") + f"?token={camera}"), 403,
                 "forbidden")
    # a file the recording does not have, even with a token naming it (signed by the server itself)
    for name in ("camera-2.webm", "..%2F..%2Fsecret_key"):
        sneaky = jwt.encode({**_claims(camera), "file": name.replace("%2F", "/")}, TEST_SECRET, "HS256")
        r = client.get(base.replace("camera-1.webm", name) + f"?token={sneaky}")
        assert r.status_code == 404 and TEST_SECRET not in r.text, r.text
    # a recording removed by the retention: its fresh URL no longer serves anything
    with session_factory() as s:
        s.get(Recording, rec["famous"]).status = RecordingStatus.expired
        s.commit()
    assert_error(client.get(rec["urls"]["camera"]), 404, "not_found")
