"""/demand-orders over HTTP: the board, offers, accepting into a booked series, and who may do what."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from scheduler import bookings
from scheduler.access import scope_of
from scheduler.models import (
    AuditEntry,
    Classroom,
    DemandOffer,
    DemandOrder,
    LessonInstance,
    LessonKind,
    LessonSeries,
    Pairing,
    SeriesReceiver,
)

API = "/api/v1/demand-orders"


@pytest.fixture
def urban_b_room(session_factory, world) -> Classroom:
    with session_factory() as s:
        room = Classroom(school_id=world.urban_b.id, name="西区一小 201 主讲教室", capacity=45)
        s.add(room)
        s.commit()
        return room


def order_body(w, **kw):
    body = dict(term_id=w.term.id, subject="英语", grade="四年级", receiving_classroom_id=w.recv_room.id,
                preferred_slots=[{"weekday": 2, "period": 3}], note="四年级缺英语老师")
    body.update(kw)
    return body


def post_order(client, auth, w, **kw) -> dict:
    r = client.post(API, json=order_body(w, **kw), headers=auth(w.rural_admin))
    assert r.status_code == 201, r.text
    return r.json()


def post_offer_b(client, auth, w, order_id, room, **kw) -> dict:
    body = dict(teacher_id=w.teacher_b.id, main_classroom_id=room.id, weekday=2, period_from=3, note="赵老师教英语")
    body.update(kw)
    r = client.post(f"{API}/{order_id}/offers", json=body, headers=auth(w.admin_b))
    assert r.status_code == 201, r.text
    return r.json()


def post_offer_a(client, auth, w, order_id) -> dict:
    """王老师 offers himself; no teacher_id means "me"."""
    r = client.post(f"{API}/{order_id}/offers", json=dict(main_classroom_id=w.main_room.id, weekday=3, period_from=2),
                    headers=auth(w.teacher))
    assert r.status_code == 201, r.text
    return r.json()


def count(session_factory, model, *where) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_full_flow_order_two_offers_accept_one(client, auth, world, session_factory, urban_b_room):
    w = world
    order = post_order(client, auth, w)
    assert order["status"] == "open" and order["rural_school_id"] == w.rural.id
    assert order["rural_school_name"] == "东区石桥村小" and order["offers"] == []
    chosen = post_offer_b(client, auth, w, order["id"], urban_b_room)
    other = post_offer_a(client, auth, w, order["id"])
    assert chosen["urban_school_name"] == "西区第一小学" and chosen["teacher_name"] == "赵老师"
    assert other["teacher_id"] == w.teacher.id and other["period_to"] == 2

    # The board: a district-B teacher sees the district-A rural school's need.
    board = client.get(API, params={"status": "open"}, headers=auth(w.teacher_b)).json()
    assert board["count"] == 1 and board["data"][0]["offer_count"] == 2
    # Competing urban schools see only their own offers; the rural side sees them all.
    assert [o["id"] for o in client.get(f"{API}/{order['id']}", headers=auth(w.teacher_b)).json()["offers"]] \
        == [chosen["id"]]
    assert len(client.get(f"{API}/{order['id']}", headers=auth(w.rural_admin)).json()["offers"]) == 2

    r = client.post(f"{API}/{order['id']}/offers/{chosen['id']}/accept", headers=auth(w.rural_admin))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["pairing_created"] is True and out["instances"] == 20
    assert out["declined_offer_ids"] == [other["id"]]
    assert out["order"]["status"] == "matched"
    assert {o["id"]: o["status"] for o in out["order"]["offers"]} == {chosen["id"]: "accepted", other["id"]: "declined"}
    assert [o["series_id"] for o in out["order"]["offers"] if o["id"] == chosen["id"]] == [out["series_id"]]

    with session_factory() as s:
        pairing = s.get(Pairing, out["pairing_id"])
        assert (pairing.urban_school_id, pairing.rural_school_id) == (w.urban_b.id, w.rural.id)
        assert pairing.active and pairing.term_id == w.term.id and "英语" in pairing.subjects
        series = s.get(LessonSeries, out["series_id"])
        assert series.status.value == "approved" and series.kind is LessonKind.dedicated
        assert series.title == "四年级英语（西区第一小学 专递）"
        assert s.scalars(select(SeriesReceiver.classroom_id).where(SeriesReceiver.series_id == series.id)).all() \
            == [w.recv_room.id]
        insts = s.scalars(select(LessonInstance).where(LessonInstance.series_id == series.id)
                          .order_by(LessonInstance.day)).all()
        assert len(insts) == 20 and all(i.day.isoweekday() == 2 for i in insts)
        assert [(i.starts_at.strftime("%H:%M"), i.ends_at.strftime("%H:%M")) for i in insts[:1]] == [("09:50", "10:30")]
        assert {i.main_classroom_id for i in insts} == {urban_b_room.id}
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.entity == "demand_order",
                                                            AuditEntry.entity_id == order["id"])
                            .order_by(AuditEntry.id)).all()
        assert actions == ["create", "offer", "offer", "accept"]


def test_accepting_a_conflicting_offer_is_409_with_the_conflicts_and_changes_nothing(
        client, auth, world, session_factory, urban_b_room):
    w = world
    with session_factory() as s:
        admin = s.merge(w.urban_admin)
        bookings.create_series(s, bookings.SeriesSpec(
            kind=LessonKind.dedicated, title="四年级数学", subject="数学", grade="四年级", term_id=w.term.id,
            main_classroom_id=w.main_room.id, main_teacher_id=w.teacher.id, weekday=2, period_from=3, period_to=3,
            receivers=(bookings.ReceiverSpec(w.recv_room.id),)), actor=admin, scope=scope_of(s, admin))
        s.commit()
    order = post_order(client, auth, w)
    offer = post_offer_b(client, auth, w, order["id"], urban_b_room)

    r = client.post(f"{API}/{order['id']}/offers/{offer['id']}/accept", headers=auth(w.rural_admin))
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "conflict" and body["conflicts"]
    assert {(c["resource"], c["resource_id"]) for c in body["conflicts"]} == {("classroom", w.recv_room.id)}
    assert body["conflicts"][0]["lesson_title"] == "四年级数学"

    detail = client.get(f"{API}/{order['id']}", headers=auth(w.rural_admin)).json()
    assert detail["status"] == "open" and detail["offers"][0]["status"] == "offered"
    assert count(session_factory, Pairing, Pairing.urban_school_id == w.urban_b.id,
                 Pairing.rural_school_id == w.rural.id) == 0
    assert count(session_factory, LessonSeries) == 1
    assert count(session_factory, AuditEntry, AuditEntry.entity == "demand_order", AuditEntry.action == "accept") == 0


def test_receiving_classroom_can_be_given_when_accepting(client, auth, world):
    w = world
    order = post_order(client, auth, w, receiving_classroom_id=None)
    offer = post_offer_a(client, auth, w, order["id"])
    url = f"{API}/{order['id']}/offers/{offer['id']}/accept"
    r = client.post(url, headers=auth(w.rural_admin))
    assert r.status_code == 422 and "接收教室" in r.json()["message"]
    r = client.post(url, json={"receiving_classroom_id": w.recv_room2.id}, headers=auth(w.rural_admin))
    assert r.status_code == 200, r.text
    assert r.json()["pairing_created"] is False  # 实验小学 and 石桥村小 are already paired
    assert r.json()["order"]["receiving_classroom_id"] == w.recv_room2.id


def test_without_a_token_every_endpoint_is_401(client, world):
    for method, path in [("get", API), ("post", API), ("get", f"{API}/1"), ("post", f"{API}/1/offers"),
                         ("post", f"{API}/1/offers/1/accept"), ("post", f"{API}/1/offers/1/decline"),
                         ("post", f"{API}/1/close")]:
        r = getattr(client, method)(path, json={}) if method == "post" else client.get(path)
        assert r.status_code == 401, (method, path, r.text)


def test_students_and_terminals_are_403(client, auth, world):
    w = world
    order = post_order(client, auth, w)
    for who in (w.student, w.terminal_recv):
        assert client.get(API, headers=auth(who)).status_code == 403
        assert client.get(f"{API}/{order['id']}", headers=auth(who)).status_code == 403
        r = client.post(API, json=order_body(w, rural_school_id=w.rural.id), headers=auth(who))
        assert r.status_code == 403


def test_an_admin_of_another_school_cannot_accept_decline_or_close(client, auth, world, session_factory, urban_b_room):
    w = world
    order = post_order(client, auth, w)
    offer = post_offer_b(client, auth, w, order["id"], urban_b_room)
    for path in (f"offers/{offer['id']}/accept", f"offers/{offer['id']}/decline", "close"):
        r = client.post(f"{API}/{order['id']}/{path}", headers=auth(w.admin_b))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["code"] == "forbidden"
    with session_factory() as s:
        assert s.get(DemandOrder, order["id"]).status.value == "open"
        assert s.get(DemandOffer, offer["id"]).status.value == "offered"


def test_an_urban_admin_cannot_post_an_order_for_a_rural_school_not_theirs(client, auth, world):
    w = world
    r = client.post(API, json=order_body(w, rural_school_id=w.rural.id), headers=auth(w.urban_admin))
    assert r.status_code == 403
    # Nor for their own (urban) school: orders are rural needs.
    r = client.post(API, json=order_body(w, receiving_classroom_id=None), headers=auth(w.urban_admin))
    assert r.status_code == 422 and "不是农村学校" in r.json()["message"]
    assert client.get(API, headers=auth(w.urban_admin)).json() == {"data": [], "count": 0}


def test_an_offer_with_a_teacher_of_another_school_is_refused(client, auth, world, urban_b_room):
    w = world
    order = post_order(client, auth, w)
    url = f"{API}/{order['id']}/offers"
    r = client.post(url, json=dict(teacher_id=w.teacher.id, main_classroom_id=urban_b_room.id, weekday=2,
                                   period_from=3), headers=auth(w.admin_b))
    assert r.status_code == 422 and "不是西区第一小学的教师" in r.json()["message"]
    # A teacher may offer only themselves.
    r = client.post(url, json=dict(teacher_id=w.teacher2.id, main_classroom_id=w.main_room.id, weekday=2,
                                   period_from=3), headers=auth(w.teacher))
    assert r.status_code == 403
    # Weekday out of range is caught by the schema.
    r = client.post(url, json=dict(main_classroom_id=w.main_room.id, weekday=8, period_from=3),
                    headers=auth(w.teacher))
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


def test_decline_then_close(client, auth, world, urban_b_room):
    w = world
    order = post_order(client, auth, w)
    a = post_offer_a(client, auth, w, order["id"])
    b = post_offer_b(client, auth, w, order["id"], urban_b_room)
    r = client.post(f"{API}/{order['id']}/offers/{a['id']}/decline", json={"reason": "时间不合适"},
                    headers=auth(w.rural_admin))
    assert r.status_code == 200 and r.json()["status"] == "declined"
    r = client.post(f"{API}/{order['id']}/close", headers=auth(w.rural_admin))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    assert {o["id"]: o["status"] for o in r.json()["offers"]} == {a["id"]: "declined", b["id"]: "declined"}
    r = client.post(f"{API}/{order['id']}/offers/{b['id']}/accept", headers=auth(w.rural_admin))
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    assert client.get(f"{API}/99999", headers=auth(w.rural_admin)).status_code == 404


def test_board_filters_and_pagination(client, auth, world):
    w = world
    first = post_order(client, auth, w)
    second = post_order(client, auth, w, subject="数学", grade="五年级")
    h = auth(w.researcher_city)
    page = client.get(API, params={"limit": 1}, headers=h).json()
    assert page["count"] == 2 and [o["id"] for o in page["data"]] == [second["id"]]  # newest first
    page = client.get(API, params={"limit": 1, "offset": 1}, headers=h).json()
    assert [o["id"] for o in page["data"]] == [first["id"]]
    assert [o["id"] for o in client.get(API, params={"subject": "数学"}, headers=h).json()["data"]] == [second["id"]]
    assert client.get(API, params={"grade": "四年级", "term_id": w.term.id}, headers=h).json()["count"] == 1
    assert client.get(API, params={"region_id": w.district_b.id}, headers=h).json()["count"] == 0
    assert client.get(API, params={"status": "matched"}, headers=h).json()["count"] == 0
    assert client.get(API, params={"status": "bogus"}, headers=h).status_code == 422
    assert first["preferred_slots"] == [{"weekday": 2, "period": 3}]
