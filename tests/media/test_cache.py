"""media.cache.PacketCache: ring by sequence number, age limit, wrap-around, power-of-two size."""

from __future__ import annotations

import pytest

from media.cache import PacketCache


def test_size_rounded_up_to_power_of_two() -> None:
    assert PacketCache(1000).size == 1024
    assert PacketCache(1024).size == 1024
    assert PacketCache(1).size == 1
    assert PacketCache().size == 2048
    with pytest.raises(ValueError):
        PacketCache(0)
    with pytest.raises(ValueError):
        PacketCache(65537)


def test_put_get() -> None:
    c = PacketCache(8)
    c.put(100, b"a", 1.0)
    c.put(101, b"b", 1.1)
    assert c.get(100, 1.2) == b"a"
    assert c.get(101, 1.2) == b"b"
    assert c.get(102, 1.2) is None
    assert c.get(99, 1.2) is None


def test_overwritten_slot_does_not_answer_for_old_seq() -> None:
    c = PacketCache(8)
    c.put(3, b"old", 0.0)
    c.put(11, b"new", 0.1)  # same slot (11 & 7 == 3)
    assert c.get(3, 0.2) is None
    assert c.get(11, 0.2) == b"new"


def test_max_age() -> None:
    c = PacketCache(16, max_age_s=1.0)
    c.put(5, b"x", 10.0)
    assert c.get(5, 11.0) == b"x"
    assert c.get(5, 11.001) is None


def test_wrap_around() -> None:
    c = PacketCache(16)
    for i, seq in enumerate([65534, 65535, 0, 1]):
        c.put(seq, bytes([i]), 0.0)
    assert [c.get(s, 0.0) for s in (65534, 65535, 0, 1)] == [b"\x00", b"\x01", b"\x02", b"\x03"]


def test_clear() -> None:
    c = PacketCache(4)
    c.put(0, b"a", 0.0)
    c.clear()
    assert c.get(0, 0.0) is None
    assert c.size == 4


def test_a_packet_written_over_in_the_arena_is_not_answered() -> None:
    c = PacketCache(64, arena=4096)
    c.put(1, b"a" * 1000, 0.0)
    for seq in range(2, 6):  # 4000 more bytes: the arena went round once
        c.put(seq, bytes([seq]) * 1000, 0.0)
    assert c.get(1, 0.0) is None
    assert c.get(5, 0.0) == b"\x05" * 1000
    assert c.get(4, 0.0) == b"\x04" * 1000


def test_a_packet_never_wraps_inside_the_arena() -> None:
    c = PacketCache(64, arena=4096)
    c.put(1, b"x" * 3000, 0.0)
    c.put(2, b"y" * 1500, 0.0)  # does not fit after the first: starts the arena again
    assert c.get(2, 0.0) == b"y" * 1500
    assert c.get(1, 0.0) is None  # its bytes were written over
    with pytest.raises(ValueError):
        PacketCache(8, arena=100)
