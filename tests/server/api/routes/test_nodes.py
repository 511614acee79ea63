"""``GET /nodes``: the cluster's nodes for system admins only; alone, the node lists itself."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.core.config import Settings
from server.main import create_app
from tests.conftest import TEST_SECRET


def test_only_a_system_admin_lists_the_nodes(client, world, auth):
    for user in (world.teacher, world.researcher_city, world.student, world.terminal_recv):
        r = client.get("/api/v1/nodes", headers=auth(user))
        assert r.status_code == 403, (user.username, r.text)
    for user in (world.city_admin, world.urban_admin):  # an admin of a region or a school: not the servers
        r = client.get("/api/v1/nodes", headers=auth(user))
        assert r.status_code == 403 and "系统管理员" in r.json()["message"]
    assert client.get("/api/v1/nodes").status_code == 401
    r = client.get("/api/v1/nodes", headers=auth(world.sysadmin))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["clustered"] is False  # no Redis: this node alone, from its own process
    [me] = body["data"]
    assert me["this_node"] is True and me["draining"] is False and me["accepting_rooms"] is True
    assert me["url"] == "http://127.0.0.1:8000" and me["rooms"] == 0 and me["participants"] == 0
    assert me["started_at"].endswith("+08:00")
    assert [w["index"] for w in me["workers"]] == [0] and me["workers"][0]["consumers"] == 0


def test_nodes_on_one_redis_see_each_other(redis_server, tmp_path, db_url, world, auth):
    def node(name: str) -> object:
        return create_app(Settings(data_dir=tmp_path / name, database_url=db_url, secret_key=TEST_SECRET,
                                   redis_url=redis_server.url, node_id=name, public_url=f"https://{name}.example.cn/",
                                   media_workers=0), migrate=False, run_lifecycle=False)

    with TestClient(node("nodes-a")) as a, TestClient(node("nodes-b")) as b:
        for me, other in ((a, "nodes-b"), (b, "nodes-a")):
            body = me.get("/api/v1/nodes", headers=auth(world.sysadmin)).json()
            assert body["clustered"] is True
            listed = {n["node_id"]: n for n in body["data"] if n["node_id"].startswith("nodes-")}
            assert set(listed) == {"nodes-a", "nodes-b"}
            assert listed[other]["this_node"] is False and listed[other]["url"] == f"https://{other}.example.cn"
            assert 0 <= listed[other]["heartbeat_age_s"] <= 6
            health = me.get("/healthz").json()
            assert health["registry"] == "redis" and health["redis"] == "ok" and health["accepting_rooms"] is True
