"""LINE's own figures on a campaign's results page: the worker's job asks the LINE emulator's insight
API for the campaign's aggregation unit (never on the day of the send: LINE has the figures from the
day after) and keeps the answer; the page shows LINE's opens and clicks beside Kizuna's counts, with
what LINE withholds under its privacy threshold said as such."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from kizuna.bot.keys import LINE
from kizuna.campaigns import insight
from kizuna.storage import campaign_insights
from kizuna.storage.types import utcnow
from tests.campaigns.test_campaigns import create, wait_for_status
from tests.console.test_console_campaigns import befriend, marketer


def panel(page: str) -> str:
    return page.split("data-line-insight")[1].split("</section>")[0]


def line_cell(page: str, key: str) -> str:
    return panel(page).split(f'data-insight="{key}"')[1].split("data-line>")[1].split("</td>")[0]


async def test_the_results_page_shows_lines_opens_and_clicks_for_the_campaigns_unit(console):
    kizuna = console.kizuna
    hanako, taro = await befriend(console, "花子", "太郎")
    campaign = await create(kizuna, messages=[{"type": "text", "text": "冬のセール https://shop.example/sale"}], track_links=False)
    await wait_for_status(kizuna, campaign["id"], "completed")
    # Both saw it, 花子 tapped its link twice (as the chat page reports to the emulator).
    for user in (hanako, taro):
        kizuna.emulator.open(user.user_id)
    [delivered] = [m for m in kizuna.emulator.messages_to(hanako.user_id) if m.via == "multicast"]
    kizuna.emulator.click(hanako.user_id, "https://shop.example/sale", delivered)
    kizuna.emulator.click(hanako.user_id, "https://shop.example/sale", delivered)
    browser = await marketer(console)
    fetch = kizuna.server.app[LINE].get_statistics_per_unit

    # Nothing asked yet: the page says when LINE's figures come, and asks LINE nothing itself.
    before = len(kizuna.emulator.requests)
    response, page = await browser.get(f"/console/campaigns/{campaign['id']}")
    assert response.status == 200 and "LINEの数値は配信の翌日から表示されます" in panel(page)
    assert len(kizuna.emulator.requests) == before

    # On the day of the send the job does not ask LINE either (no figures before the day after).
    assert await insight.refresh_due(kizuna.sessions, fetch, now=utcnow()) == 0
    assert not [r for r in kizuna.emulator.requests if "insight" in r.path]

    # The day after: LINE's figures, with its privacy threshold (20 people) withholding the unique counts.
    tomorrow = utcnow() + timedelta(days=1)
    assert await insight.refresh_due(kizuna.sessions, fetch, now=tomorrow) == 1
    assert len([r for r in kizuna.emulator.requests if "insight" in r.path]) == 1
    response, page = await browser.get(f"/console/campaigns/{campaign['id']}")
    assert line_cell(page, "impressions") == "2" and line_cell(page, "clicks") == "2"
    assert "非公開" in line_cell(page, "unique_impressions") and "LINEのプライバシー基準" in panel(page)
    # Cached: within the hour nobody asks LINE again.
    assert await insight.refresh_due(kizuna.sessions, fetch, now=tomorrow + timedelta(minutes=30)) == 0

    # An hour on, with LINE's threshold met (the emulator's lowered for two people), the unique counts show.
    # Three workers look at once: one asks LINE (each look is claimed in the database).
    kizuna.emulator.insight_min_users = 1
    later = tomorrow + timedelta(hours=1, minutes=1)
    asked = await asyncio.gather(*(insight.refresh_due(kizuna.sessions, fetch, now=later) for _ in range(3)))
    assert sum(asked) == 1 and len([r for r in kizuna.emulator.requests if "insight" in r.path]) == 2
    response, page = await browser.get(f"/console/campaigns/{campaign['id']}")
    assert line_cell(page, "unique_impressions") == "2" and line_cell(page, "unique_clicks") == "1"
    assert "LINEのプライバシー基準" not in panel(page)
    async with kizuna.sessions() as session:
        row = await campaign_insights.of(session, campaign["id"])
    assert row.status == "ready" and row.figures["overview"]["uniqueClick"] == 1
