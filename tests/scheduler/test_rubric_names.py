"""A rubric's name does not repeat its region: every list shows ``名称（区域）``, so the region in brackets at
the end of the name itself would read twice (``专递课堂评课表（清河市）（清河市）``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from scheduler import patrol
from scheduler.access import scope_of
from scheduler.errors import Invalid

ITEMS = [patrol.ItemSpec("教学目标", 10, 1)]


@pytest.mark.parametrize("given, stored", [
    ("专递课堂评课表（示例市）", "专递课堂评课表"),
    ("专递课堂评课表 (示例市)", "专递课堂评课表"),
    ("  专递课堂评课表  ", "专递课堂评课表"),
    ("示例市专递课堂评课表", "示例市专递课堂评课表"),  # the region inside the name is the name's business
    ("专递课堂评课表（东区）", "专递课堂评课表（东区）"),  # another region's name is not this one's suffix
])
def test_a_rubric_is_stored_without_its_region_suffix(session, world, given: str, stored: str) -> None:
    admin = session.merge(world.city_admin)
    t = patrol.create_rubric(session, scope_of(session, admin), region_id=world.city.id, name=given, items=ITEMS,
                             now=datetime(2026, 9, 1))
    assert t.name == stored
    shown = f"{t.name}（{world.city.name}）"  # how the evaluation panel lists it
    assert shown.count(world.city.name) == stored.count(world.city.name) + 1


def test_renaming_drops_the_suffix_too_and_a_name_of_only_the_region_is_refused(session, world) -> None:
    admin = session.merge(world.city_admin)
    scope = scope_of(session, admin)
    t = patrol.create_rubric(session, scope, region_id=world.city.id, name="课堂评价表", items=ITEMS,
                             now=datetime(2026, 9, 1))
    assert patrol.update_rubric(session, scope, t.id, name="听课评价表（示例市）").name == "听课评价表"
    with pytest.raises(Invalid):
        patrol.update_rubric(session, scope, t.id, name="  ")
