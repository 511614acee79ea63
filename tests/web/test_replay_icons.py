"""The replay pages draw their controls with SanKe's SVG icons: no emoji, which a Debian PC without
an emoji font shows as empty boxes (the library, the player paused and playing)."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Site
from tests.web.test_patrol_page import EMOJI, TEXT_JS
from tests.web.test_replay_page import add_recording


def test_the_replay_pages_show_no_emoji_and_their_buttons_have_icons(web_server: Site, settings: Any,
                                                                     open_page: Any, js_poll: Any) -> None:
    rid = add_recording(web_server, settings)
    page = open_page(web_server.world.teacher, "/replay/")
    js_poll(page, "document.querySelectorAll('#library tbody tr[data-id]').length === 1")
    assert not EMOJI.findall(page.evaluate(TEXT_JS))

    page.goto(f"/replay/?id={rid}")
    js_poll(page, "!document.getElementById('player-view').hidden")
    icon = "document.querySelector('#play svg.icon use').getAttribute('href')"
    assert page.evaluate(icon).endswith("#play")
    assert "播放" in page.text_content("#play")
    assert not EMOJI.findall(page.evaluate(TEXT_JS))
    page.click("#play")
    js_poll(page, f"{icon}.endsWith('#pause') && document.getElementById('play').textContent.includes('暂停')")
    assert not EMOJI.findall(page.evaluate(TEXT_JS))
    # the sprite is served with the page: the icon has a size and is drawn from /assets/icons.svg
    assert page.evaluate("document.querySelector('#play svg.icon').getBoundingClientRect().width") > 0
    r = web_server.http.get("/assets/icons.svg")
    assert r.status_code == 200 and 'id="pause"' in r.text and 'id="arrow-left"' in r.text
    page.click("#play")
    js_poll(page, f"{icon}.endsWith('#play')")
