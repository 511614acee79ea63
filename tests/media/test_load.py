"""``media.load.LoadMeter``: a worker's counters only grow, whatever comes and goes under them."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

from media.load import LoadMeter


def consumer(packets: int, octets: int, lost: int = 0, loss: float = 0.0) -> Any:
    return NS(sent_packets=packets, sent_octets=octets, stats=NS(cumulative_lost=lost, loss_fraction=loss))


def stream(received: int, lost: int = 0, loss: float = 0.0) -> Any:
    return NS(ssrc=1234, stats=NS(received=received, lost=lost, loss_fraction=loss))


def recv_transport(consumers: dict[str, Any]) -> Any:
    return NS(direction="recv", consumers=consumers, streams=lambda: [])


def send_transport(streams: list[Any]) -> Any:
    return NS(direction="send", consumers={}, streams=lambda: streams)


def router(*transports: Any, producers: int = 0) -> Any:
    consumers = {f"{i}:{cid}": c for i, t in enumerate(transports) for cid, c in t.consumers.items()}
    return NS(transports={f"t{i}": t for i, t in enumerate(transports)}, producers=dict.fromkeys(range(producers)),
              consumers=consumers)


def test_counts_and_totals_of_a_read() -> None:
    meter = LoadMeter()
    up = send_transport([stream(1000, lost=4, loss=0.01)])
    down = recv_transport({"a": consumer(500, 60_000, lost=2, loss=0.02), "b": consumer(300, 30_000)})
    load = meter.read([router(up, down, producers=1)])
    assert (load["routers"], load["transports"], load["producers"], load["consumers"]) == (1, 2, 1, 2)
    assert load["forwarded_packets"] == 800 and load["forwarded_bytes"] == 90_000
    assert load["received_packets"] == 1000 and load["lost_up"] == 4 and load["lost_down"] == 2
    assert load["loss_up"] == 0.01 and load["loss_down"] == 0.02
    assert load["pid"] > 0 and load["cpu_s"] > 0


def test_a_consumer_that_goes_away_takes_nothing_from_the_totals() -> None:
    meter = LoadMeter()
    a, b = consumer(500, 50_000), consumer(300, 30_000)
    down = recv_transport({"a": a, "b": b})
    r = router(down)
    assert meter.read([r])["forwarded_packets"] == 800
    del down.consumers["b"]  # unsubscribed
    a.sent_packets = 600
    assert meter.read([r])["forwarded_packets"] == 800  # its 300 stay counted; the 100 more of a wait...
    a.sent_packets = 700
    assert meter.read([r])["forwarded_packets"] == 900  # ...and growth after that counts again


def test_a_closing_transport_is_counted_to_its_last_packet() -> None:
    meter = LoadMeter()
    c = consumer(100, 10_000)
    down = recv_transport({"c": c})
    r = router(down)
    meter.read([r])
    c.sent_packets = 150  # sent between the last read and the close
    meter.retire([down])
    r.transports.clear()
    load = meter.read([r])
    assert load["forwarded_packets"] == 150 and load["transports"] == 0
    # a new transport starts its own counters from zero: the total goes on from 150
    r.transports["t9"] = recv_transport({"d": consumer(20, 2_000)})
    assert meter.read([r])["forwarded_packets"] == 170
