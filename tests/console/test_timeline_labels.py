"""What the console's timeline says for the bot's own entries (console/timeline.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial

from kizuna.console import timeline
from kizuna.console.i18n import translate
from kizuna.storage.models import Direction, Interaction


def test_a_tag_the_bot_added_is_named_on_the_timeline():
    row = Interaction(id=1, customer_id=1, direction=Direction.SYS, kind="customer.tagged", text="セール関心",
                      payload={"tag": "セール関心", "via": "keyword_rule"}, created_at=datetime(2026, 12, 5, tzinfo=timezone.utc))
    [_day, item] = timeline.build([row], staff={}, customer_name="花子", timezone=timezone.utc, t=partial(translate, "ja"))
    assert translate("ja", item.label, **item.values) == "自動でタグ「セール関心」が付きました"
    assert translate("en", item.label, **item.values) == "Tagged セール関心 automatically"
