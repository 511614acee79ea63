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

from bench.weaklink import PAGE_PUBLISH, PUBLISHER_SAMPLE, _launch, _policy

SAMPLE_S = 0.5


def publish(base: str, lesson: int, token: str, prefix: str, out: Path, seconds: float) -> None:
    from playwright.sync_api import sync_playwright

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with sync_playwright() as pw:
        browser = _launch(pw, base)
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and print("page:", m.text, file=sys.stderr, flush=True))
            page.goto(f"{base}/healthz")
            me = page.evaluate(PAGE_PUBLISH, {"token": token, "lesson": lesson, "prefix": prefix})
            print(f"main classroom published as {me}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + seconds
            with out.open("a") as f:
                while time.monotonic() < deadline and not stop["now"]:
                    sample = page.evaluate(PUBLISHER_SAMPLE, "main")
                    sample["at"] = time.time()  # this process's clock (the test's), not the page's
                    f.write(json.dumps(sample) + "\n")
                    f.flush()
                    page.wait_for_timeout(SAMPLE_S * 1000)
        finally:
            browser.close()


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
