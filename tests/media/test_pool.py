"""media.pool: worker processes (with a fake worker), placement, events, deaths, closing; settings."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from media import ice
from media.channel import ChannelError
from media.pool import WORKER_DIED, WorkerClassMissing, WorkerPool
from tests.utils.wait import until, wait_until

FAKE = "tests.media.fake_worker:FakeWorker"
ICE = {"ice_servers": "stun:stun.example.org:3478", "ice_host_addresses": "127.0.0.1",
       "ice_allowed_networks": "127.0.0.0/8,::1/128", "ice_announced_address": None}
ROOT = Path(__file__).resolve().parents[2]
POLL: dict[str, float] = {"timeout": 10, "interval": 0.02}
"""How the tests wait for the pool's events (``until``)."""


def run(coro: Any, timeout: float = 20.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def reaped(pid: int) -> bool:
    """Not our child any more: exited and reaped (no zombie left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return False


@pytest.fixture(autouse=True)
def _restore_aioice():  # type: ignore[no-untyped-def]
    yield
    ice.reset()


def test_worker_processes_place_routers_stickily_and_evenly_send_events_and_get_replaced():
    events: list[tuple[int, str, dict]] = []

    async def main() -> list[int]:
        pool = WorkerPool(2, ICE, worker_class=FAKE, on_event=lambda i, e, d: events.append((i, e, d)))
        await pool.start()
        try:
            pids = pool.pids()
            assert len(pids) == 2 and os.getpid() not in pids
            for pid in pids:
                assert not gone(pid)
                assert b"media.worker_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert sorted(Path(f"/proc/{pid}/comm").read_text().strip() for pid in pids) == [
                "sanke-media-0", "sanke-media-1"]
            assert [w.index for w in pool.workers] == [0, 1] and [w.pid for w in pool.workers] == pids

            # Placement: fewest routers first, then sticky.
            placed = {}
            for rid in ("a", "b", "c", "d"):
                placed[rid] = (await pool.request(rid, "router.create", {"routerId": rid}))["pid"]
            assert placed == {"a": pids[0], "b": pids[1], "c": pids[0], "d": pids[1]}
            assert (await pool.request("a", "echo", {}))["pid"] == pids[0]
            assert pool.worker_for("c").index == 0 and pool.workers[0].routers == {"a", "c"}
            pool.release("b")
            pool.release("d")
            assert pool.workers[1].routers == set()
            assert pool.worker_for("e").index == 1  # the emptier worker
            pool.release("e")

            # Events carry the worker index.
            await until("four routers created",
                        lambda: len([e for e in events if e[1] == "router.created"]) == 4, **POLL)
            assert [(i, d["routerId"]) for i, e, d in events if e == "router.created"] == [
                (0, "a"), (1, "b"), (0, "c"), (1, "d")]

            # The ICE strings reached the worker processes.
            policy = await pool.request("a", "policy", {})
            assert policy == {"host_addresses": ["127.0.0.1"], "servers": [["stun:stun.example.org:3478"]]}

            # Errors keep their codes across the process boundary.
            with pytest.raises(ChannelError) as info:
                await pool.request("a", "refuse", {"code": "forbidden"})
            assert info.value.code == "forbidden"

            # A worker killed outright: reported with its routers, replaced in the same slot.
            os.kill(pids[0], signal.SIGKILL)
            await until("worker_died", lambda: any(e == WORKER_DIED for _, e, _ in events), **POLL)
            died = [(i, d) for i, e, d in events if e == WORKER_DIED]
            assert died == [(0, {"routers": ["a", "c"], "pid": pids[0], "exit_code": -signal.SIGKILL})]
            await until("a replacement worker", lambda: pool.workers[0].pid not in (None, pids[0]), **POLL)
            new_pid = pool.workers[0].pid
            assert new_pid is not None and not gone(new_pid) and reaped(pids[0])
            assert pool.workers[0].routers == set()
            assert (await pool.request("a", "router.create", {"routerId": "a"}))["pid"] == new_pid
            assert sorted(pool.pids()) == sorted([new_pid, pids[1]])
            return [*pids, new_pid]
        finally:
            await pool.close()
            await pool.close()  # idempotent

    all_pids = run(main())
    for pid in all_pids:
        assert reaped(pid), f"worker {pid} left behind"


def test_restarts_are_bounded_and_sigterm_ends_a_worker_cleanly(monkeypatch):
    monkeypatch.setattr("media.pool.MAX_RESTARTS", 1)
    events: list[tuple[int, str, dict]] = []

    async def main() -> list[int]:
        pool = WorkerPool(1, {}, worker_class=FAKE)
        unsubscribe = pool.add_listener(lambda i, e, d: events.append((i, e, d)))
        await pool.start()
        try:
            first = pool.workers[0].pid
            assert first is not None
            os.kill(first, signal.SIGTERM)  # exits on its own, with 0
            await until("the worker replaced", lambda: pool.workers[0].pid != first, **POLL)
            second = pool.workers[0].pid
            assert second is not None
            assert events[-1] == (0, WORKER_DIED, {"routers": [], "pid": first, "exit_code": 0})
            os.kill(second, signal.SIGKILL)
            await until("two events", lambda: len(events) == 2, **POLL)
            await asyncio.sleep(0.3)
            assert not pool.workers[0].alive and pool.pids() == []  # budget spent: the slot stays empty
            with pytest.raises(ChannelError) as info:
                await pool.request("r", "echo", {})
            assert info.value.code == "no_worker"
            unsubscribe()
            return [first, second]
        finally:
            await pool.close()

    for pid in run(main()):
        assert reaped(pid)


def test_a_worker_that_cannot_start_fails_the_start_and_leaves_nothing_behind():
    async def main() -> None:
        pool = WorkerPool(1, {}, worker_class="tests.media.fake_worker:FailingWorker")
        with pytest.raises(RuntimeError, match="did not start"):
            await pool.start()
        assert not pool.started and pool.workers == []

    run(main())
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child of ours, alive or zombie


def test_a_missing_worker_module_is_told_apart_from_a_broken_one(tmp_path, monkeypatch):
    (tmp_path / "broken_worker_mod.py").write_text("import sanke_no_such_dependency_xyz\nclass Worker: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    async def main() -> None:
        with pytest.raises(WorkerClassMissing):
            await WorkerPool(0, {}, worker_class="tests.media.no_such_worker:Worker").start()
        with pytest.raises(ModuleNotFoundError) as info:
            await WorkerPool(0, {}, worker_class="broken_worker_mod:Worker").start()
        assert not isinstance(info.value, WorkerClassMissing)
        with pytest.raises(ImportError, match="has no Nope"):
            await WorkerPool(0, {}, worker_class="tests.media.fake_worker:Nope").start()
        with pytest.raises(ValueError, match="SANKE_ICE_ALLOWED_NETWORKS"):
            await WorkerPool(0, {"ice_allowed_networks": "loopback"}, worker_class=FAKE).start()

    run(main())


def test_in_process_worker_uses_the_same_channel_and_installs_the_ice_policy():
    events: list[tuple[int, str, dict]] = []

    async def main() -> None:
        assert ice.current_policy() is None
        pool = WorkerPool(0, ICE, worker_class=FAKE, on_event=lambda i, e, d: events.append((i, e, d)))
        await pool.start()
        assert pool.started and pool.in_process
        assert [(w.index, w.pid) for w in pool.workers] == [(0, None)] and pool.pids() == [os.getpid()]
        assert ice.current_policy() is not None and ice.current_policy().host_addresses == ("127.0.0.1",)
        result = await pool.request("r1", "router.create", {"routerId": "r1"})
        assert result["pid"] == os.getpid() and pool.worker_for("r2").index == 0
        await until("router.created of r1",
                    lambda: events == [(0, "router.created", {"routerId": "r1", "pid": os.getpid()})], **POLL)
        await pool.close()
        assert ice.current_policy() is None and not pool.started
        await pool.start()  # a closed pool can start again
        assert (await pool.request("r1", "echo", {"x": 1}))["params"] == {"x": 1}
        await pool.close()

    run(main())


def test_worker_processes_end_when_the_server_process_dies(tmp_path):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from media.pool import WorkerPool

        async def main():
            pool = WorkerPool(2, {{}}, worker_class={FAKE!r})
            await pool.start()
            print(*pool.pids(), flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and not any(gone(p) for p in pids)
    finally:
        server.kill()
        server.wait()
    wait_until("the worker processes gone with the server", lambda: all(gone(p) for p in pids), 5, interval=0.02)


# ---------------------------------------------------------------------- settings and the app


def test_media_workers_setting(monkeypatch, tmp_path):
    from pydantic import ValidationError

    from server.core.config import Settings

    monkeypatch.delenv("SANKE_MEDIA_WORKERS", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.media_workers is None and s.effective_media_workers == max(1, min(os.cpu_count() or 1, 64))
    monkeypatch.setenv("SANKE_MEDIA_WORKERS", "3")
    assert Settings(data_dir=tmp_path).effective_media_workers == 3
    assert Settings(data_dir=tmp_path, media_workers=0).effective_media_workers == 0
    for bad in (-1, 65):
        with pytest.raises(ValidationError, match="SANKE_MEDIA_WORKERS must be between 0"):
            Settings(data_dir=tmp_path, media_workers=bad)
    assert Settings(data_dir=tmp_path, ice_host_addresses="127.0.0.1").ice_strings() == {
        "ice_servers": None, "ice_host_addresses": "127.0.0.1",
        "ice_allowed_networks": None, "ice_announced_address": None}


def test_the_app_runs_an_in_process_pool_and_closes_it(tmp_path):
    from fastapi.testclient import TestClient

    from server.core.config import Settings
    from server.main import create_app

    settings = Settings(data_dir=tmp_path, secret_key="k" * 32, media_workers=0, ice_host_addresses="127.0.0.1")
    app = create_app(settings, run_lifecycle=False, media_worker_class=FAKE)
    pool: WorkerPool = app.state.media
    with TestClient(app) as client:
        assert pool.started and pool.in_process
        result = client.portal.call(pool.request, "lesson-1", "router.create", {"routerId": "lesson-1"})
        assert result == {"routerId": "lesson-1", "pid": os.getpid()}
        assert client.portal.call(pool.request, "lesson-1", "policy", {})["host_addresses"] == ["127.0.0.1"]
        assert client.get("/healthz").json()["status"] == "ok"
    assert not pool.started and pool.workers == []


def test_the_app_does_not_start_without_working_media_workers(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from server.core.config import Settings
    from server.main import create_app

    (tmp_path / "broken_worker_mod.py").write_text("import sanke_no_such_dependency_xyz\nclass Worker: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings(data_dir=tmp_path, secret_key="k" * 32, media_workers=0)
    app = create_app(settings, run_lifecycle=False, media_worker_class="tests.media.no_such_worker:Worker")
    with pytest.raises(WorkerClassMissing):
        with TestClient(app):
            pass
    app = create_app(settings, migrate=False, run_lifecycle=False, media_worker_class="broken_worker_mod:Worker")
    with pytest.raises(ImportError):
        with TestClient(app):
            pass
    app = create_app(settings, migrate=False, run_lifecycle=False,
                     media_worker_class="tests.media.fake_worker:FailingWorker")
    with pytest.raises(RuntimeError, match="did not start"):
        with TestClient(app):
            pass


def test_pinned_workers_run_on_one_core_each() -> None:
    async def scenario() -> None:
        pool = WorkerPool(2, {}, worker_class=FAKE, pin=True)
        await pool.start()
        try:
            cores = sorted(os.sched_getaffinity(0))
            pids = pool.pids()
            assert len(pids) == 2
            for index, pid in enumerate(pids):
                assert os.sched_getaffinity(pid) == {cores[index % len(cores)]}
        finally:
            await pool.close()

    run(scenario())
