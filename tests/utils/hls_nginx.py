"""Debian's nginx as a lesson stream's origin, run with the configuration ``docs/operations.md`` gives.

``documented_block`` reads the ``nginx`` block of the document's LL-HLS section; ``nginx_origin`` runs it as
it is, with the caller's SanKe address, data folder, link secret, port and a scratch folder filled in (and a
header naming nginx's cache status, ``X-Cache``), and stops it again.  Used by ``tests/server/test_hls_nginx.py``
and ``bench/hls_viewers.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.utils.live import free_port
from tests.utils.wait import wait_until

NGINX = Path("/usr/sbin/nginx")
DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def require_nginx() -> None:
    """Skip the calling test without /usr/sbin/nginx, or fail it under ``SANKE_TEST_REQUIRE_NGINX=1``
    (``scripts/test.sh`` installs nginx and sets it)."""
    import pytest

    if NGINX.exists():
        return
    if os.environ.get("SANKE_TEST_REQUIRE_NGINX") == "1" or os.environ.get("CI"):
        pytest.fail("nginx is missing (apt install nginx)")
    pytest.skip("nginx is missing (apt install nginx)")


def documented_block() -> str:
    text = DOC.read_text()
    section = text[text.index("## A famous-school lesson's live stream (LL-HLS)"):]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert match, "docs/operations.md: the LL-HLS section has no nginx block"
    return match.group(1)


@contextmanager
def nginx_origin(sanke_url: str, data_dir: Path, secret: str, scratch: Path, *,
                 workers: int = 1) -> Iterator[str]:
    """nginx in front of the SanKe at ``sanke_url`` serving ``data_dir``'s streams; yields its base URL."""
    port = free_port()
    block = documented_block()
    scratch.mkdir(parents=True, exist_ok=True)
    for documented, here in (("127.0.0.1:8000", sanke_url.removeprefix("http://")),
                             ("/var/lib/sanke/data", str(Path(data_dir).resolve())),
                             ("/var/cache/nginx/sanke-hls", str(scratch / "cache")),
                             ("listen 80;", f"listen 127.0.0.1:{port};"),
                             ("the output of sanke hls-secret", secret)):
        assert documented in block, documented
        block = block.replace(documented, here)
    temp = "\n".join(f"  {kind}_temp_path {scratch / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                        "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the caller's folders (mode 0700)
    log = scratch / "error.log"
    conf = scratch / "nginx.conf"
    conf.write_text(f"{user}daemon off;\nworker_processes {workers};\nworker_rlimit_nofile 65536;\n"
                    f"pid {scratch / 'nginx.pid'};\nerror_log {log} warn;\nevents {{ worker_connections 16384; }}\n"
                    f"http {{\n  access_log off;\n{temp}\n  default_type application/octet-stream;\n"
                    f"  add_header X-Cache $upstream_cache_status;\n{block}\n}}\n")
    check = subprocess.run([str(NGINX), "-t", "-c", str(conf), "-e", str(log)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([str(NGINX), "-c", str(conf), "-e", str(log)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until("nginx listening", lambda: httpx.get(base + "/hls/").status_code, 10,
                   ignoring=(httpx.TransportError,))
        yield base
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
