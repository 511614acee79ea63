"""Fixtures of the weak-link lab tests (``bench/linklab.py``).

``lab``
    A fresh ``LinkLab`` per test (three namespaces, the impairing bridge, no condition), torn down
    at the end of the test. Where the machine cannot host it (not root, no ``ip netns``, no
    ``ethtool``) the test is skipped with the reason, except with ``SANKE_TEST_REQUIRE_NETNS=1``
    (``scripts/test.sh`` sets it) or ``CI``, where it fails.
``probe``
    ``probe(ns, mode, *args, timeout=30)`` runs ``tests/linklab/udpprobe.py`` inside a namespace and
    returns its JSON; ``probe.start(ns, mode, *args)`` starts it in the background (a ``Popen``
    whose stdout is the JSON, stopped by the lab at teardown).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench.linklab import LinkLab, netns_available


def netns_required() -> bool:
    return os.environ.get("SANKE_TEST_REQUIRE_NETNS") == "1" or bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def netns_ok() -> None:
    why = netns_available()
    if why:
        if netns_required():
            pytest.fail(f"the weak-link lab cannot run here: {why}")
        pytest.skip(f"the weak-link lab cannot run here: {why}")


@pytest.fixture
def lab(netns_ok: None) -> Iterator[LinkLab]:
    with LinkLab(seed=11) as lab:
        yield lab


class Probe:
    def __init__(self, lab: LinkLab) -> None:
        self.lab = lab

    def argv(self, mode: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.linklab.udpprobe", mode, *args]

    def __call__(self, ns: str, mode: str, *args: str, timeout: float = 30) -> dict[str, Any]:
        done = self.lab.run(ns, self.argv(mode, *args), timeout=timeout)
        return json.loads(done.stdout)

    def start(self, ns: str, mode: str, *args: str) -> subprocess.Popen[str]:
        return self.lab.popen(ns, self.argv(mode, *args), stdout=subprocess.PIPE, text=True)

    @staticmethod
    def result(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        return json.loads(out)


@pytest.fixture
def probe(lab: LinkLab) -> Probe:
    return Probe(lab)
