"""A SanKe server in its own process, for tests that kill it: ``python -m tests.records.server_process DIR PORT``.

The same app as ``sanke serve`` (migrations, event log, rooms, media in-process), without the
lifecycle task (the test opens the room itself) and with the test's secret.  Settings come
from the environment like in production (``SANKE_EVENT_FLUSH_INTERVAL_SECONDS`` ...).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from server.core.config import Settings
from server.main import create_app
from server.serving import serve
from tests.conftest import TEST_SECRET


def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir}/sanke.db", secret_key=TEST_SECRET,
                    ice_host_addresses="127.0.0.1", ice_allowed_networks="127.0.0.0/8", media_workers=0)


def main() -> None:
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    logging.basicConfig(level=logging.WARNING)
    app = create_app(settings(data_dir), migrate=True, run_lifecycle=False)
    serve(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
