"""No emoji in the web client's files: on a classroom PC without an emoji font (Debian's default) they
are empty boxes. Icons come from the SVG set shipped with SanKe (``web/assets/icons.svg``,
``web/assets/icons.js``). No browser needed: the files themselves are read."""

from __future__ import annotations

from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
SUFFIXES = {".html", ".js", ".css", ".svg"}

EMOJI_RANGES = [
    (0x203C, 0x203C), (0x2049, 0x2049), (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA),
    (0x231A, 0x231B), (0x2328, 0x2328), (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA),
    (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE),
    (0x2600, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
    (0xFE0F, 0xFE0F), (0x1F000, 0x1FAFF),
]
"""Code points drawn as emoji (Unicode's Extended_Pictographic outside Latin-1, and the emoji
variation selector). Arrows such as → (U+2192) and the geometric ■ (U+25A0) are ordinary text."""

PARTS = sorted(p.name for p in WEB.iterdir() if p.name != "vendor" and (p.is_dir() or p.suffix in SUFFIXES))
"""Every page and asset of the web client (web/vendor holds third-party code)."""


def is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in EMOJI_RANGES)


def emoji_in(part: str) -> list[str]:
    root = WEB / part
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found = []
    for path in files:
        if path.suffix not in SUFFIXES or "vendor" in path.relative_to(WEB).parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            hits = [ch for ch in line if is_emoji(ch)]
            if hits:
                found.append(f"web/{path.relative_to(WEB)}:{n}: {' '.join(f'U+{ord(c):04X} {c}' for c in hits)}")
    return found


def test_the_detector_knows_the_emoji_seen_in_lessons_and_lets_text_through() -> None:
    for ch in "🎤🖥🔇✋🔊⏹🎙⏱⬇📌▶⏸👁📷":
        assert is_emoji(ch), f"U+{ord(ch):04X}"
    for ch in "→←■×·–三课，（）":
        assert not is_emoji(ch), f"U+{ord(ch):04X}"


@pytest.mark.parametrize("part", PARTS)
def test_no_emoji_in_the_web_client(part: str) -> None:
    found = emoji_in(part)
    assert not found, "emoji (use icon() from /assets/icons.js instead):\n" + "\n".join(found)
