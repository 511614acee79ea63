"""SanKe as an operator starts it: the ``sanke`` command or ``scripts/run.sh`` in a child process.

The child's timetable clock is pinned like the tests' (``scheduler.clock.now``): a ``sitecustomize``
module on the child's ``PYTHONPATH`` starts its clock at ``SANKE_TEST_CLOCK`` (local wall-clock
time, ISO) and lets it run from there, so the demo data and the rooms it opens are the same on any
day. Nothing else of the child differs from a real start: its environment is the test process's
without any ``SANKE_*`` setting, plus the settings a test names.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent.parent
SANKE = REPO / ".venv" / "bin" / "sanke"
DEMO_AT = datetime(2026, 9, 7, 7, 0)
"""When the shared demo data is loaded: a Monday in the demo's term, before the first lesson."""

_HOOK = '''\
"""Test hook (tests/utils/sanke_proc.py): the timetable clock starts at SANKE_TEST_CLOCK and runs (from the
process's start, or from the wall time SANKE_TEST_CLOCK_EPOCH that several processes share)."""
import os
import time
from datetime import datetime, timedelta

_at = os.environ.get("SANKE_TEST_CLOCK")
if _at:
    import scheduler.clock as _clock

    _start, _t0 = datetime.fromisoformat(_at), time.monotonic()
    _epoch = os.environ.get("SANKE_TEST_CLOCK_EPOCH")  # processes that share one clock: from this wall time

    def _now_precise():
        if _epoch:
            t = _start + timedelta(seconds=time.time() - float(_epoch))
        else:
            t = _start + timedelta(seconds=time.monotonic() - _t0)
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    _clock.now_precise = _now_precise
    _clock.now = lambda: _now_precise().replace(microsecond=0)
'''


def clock_hook(folder: Path) -> Path:
    """A folder holding the clock hook, for the child's ``PYTHONPATH``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_HOOK)
    return folder


def child_env(hook: Path, clock_at: datetime, **settings: str) -> dict[str, str]:
    """The environment of a SanKe child process: no inherited ``SANKE_*``, the clock hook, ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANKE_") and k != "PYTHONPATH"}
    # this checkout after the hook: the hook imports scheduler.clock before ``-m`` puts the working
    # directory on the path, and an editable install elsewhere (a git worktree's venv) would win
    env.update({"PYTHONPATH": os.pathsep.join((str(hook), str(REPO))), "SANKE_TEST_CLOCK": clock_at.isoformat(),
                "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


def run_sanke(args: list[str], env: dict[str, str], *, stdin: str | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SANKE), *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


_demo_cache: dict[str, tuple[Path, str]] = {}


def demo_data(tmp_root: Path) -> tuple[Path, str]:
    """A data folder with the demo loaded at ``DEMO_AT`` by ``sanke demo``, and what it printed.

    Loaded once per test session; copy it (``copy_data``) before starting a server on it.
    """
    if "demo" not in _demo_cache:
        data = tmp_root / "demo-data"
        env = child_env(clock_hook(tmp_root / "hook"), DEMO_AT, SANKE_DATA_DIR=str(data))
        done = run_sanke(["demo"], env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        _demo_cache["demo"] = (data, done.stdout)
    return _demo_cache["demo"]


def copy_data(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def served(command: list[str], env: dict[str, str], port: int, log: Path, *,
           start_timeout: float = 300) -> Iterator[Served]:
    """Start ``command`` (a SanKe server listening on 127.0.0.1:``port``), wait until ``/healthz``
    answers, yield it, then stop it as an operator would (SIGTERM) and wait for it to exit."""
    out = log.open("w")
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    server = Served(process, base, log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}:\n{server.text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer within {start_timeout} s:\n{server.text()}")
            time.sleep(0.3)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        try:  # whatever is left of the group this helper started (media workers of a killed server)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out.close()
