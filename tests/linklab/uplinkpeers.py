"""The two peers of ``tests/linklab/test_weak_uplink.py``, each run inside a lab namespace.

``python -m tests.linklab.uplinkpeers publish BASE LESSON TOKEN PREFIX OUT SECONDS``
    The main classroom (the teacher on a school line) as Debian's Chromium on the real lesson client
    (``bench/weaklink.py``'s ``PAGE_PUBLISH``: fake 720p camera in three simulcast layers, fake
    microphone); every 0.5 s one JSON line of its publisher's ``getStats`` (``PUBLISHER_SAMPLE``) into OUT.
``python -m tests.linklab.uplinkpeers watch BASE LESSON TOKEN ADDRESS OUT SECONDS``
    A receiving classroom (aiortc, signaling client of ``signaling/client.py``) that subscribes to the
    main classroom's camera and microphone (so the SFU wants every camera layer: dynacast), and every
    0.5 s one JSON line of the SFU's ``router.dump`` (``/bench/dump``) into OUT.

Both stop after SECONDS or on SIGTERM.  Traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.weaklink import PUBLISHER_SAMPLE, _policy, run_chromium_publisher

SAMPLE_S = 0.5


def publish(base: str, lesson: int, token: str, prefix: str, out: Path, seconds: float) -> None:
    def stats(page: Any) -> dict[str, Any]:
        sample: dict[str, Any] = page.evaluate(PUBLISHER_SAMPLE, "main")
        sample["at"] = time.time()  # this process's clock (the test's), not the page's
        return sample

    run_chromium_publisher(base, lesson, token, prefix, out, seconds, stats, SAMPLE_S)


async def watch(base: str, lesson: int, token: str, address: str, out: Path, seconds: float) -> None:
    import httpx

    from signaling.client import LessonClient

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    client = LessonClient(base, lesson, token, policy=_policy(address))
    joined = await client.connect()
    main = next(p["participant_id"] for p in joined.get("participants", []) if p.get("role") == "main")
    await client.subscribe([{"participant_id": main, "source": "camera"},
                            {"participant_id": main, "source": "microphone"}])
    print(f"receiving classroom subscribed to {main}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + seconds
    with out.open("a") as f:
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline and not stop.is_set():
                try:
                    dump = (await http.get(f"{base}/bench/dump", params={"router": f"lesson-{lesson}"})).json()
                    f.write(json.dumps({"at": time.time(), "dump": dump}) + "\n")
                    f.flush()
                except (httpx.HTTPError, ValueError):
                    pass
                try:
                    await asyncio.wait_for(stop.wait(), SAMPLE_S)
                except asyncio.TimeoutError:
                    pass
    await client.close()
    if client.subscriber is not None:
        await client.subscriber.close()


def main(argv: list[str]) -> int:
    mode, base, lesson, token, where, out, seconds = argv
    if mode == "publish":
        publish(base, int(lesson), token, where, Path(out), float(seconds))
    elif mode == "watch":
        asyncio.run(watch(base, int(lesson), token, where, Path(out), float(seconds)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
