"""Aggregation units on push and multicast, and the opens and clicks LINE's insight reports."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from linebot.v3.insight import AsyncApiClient as InsightClient, AsyncInsight, Configuration as InsightConfiguration
from linebot.v3.messaging import (
    ApiException,
    AsyncMessagingApi,
    BroadcastRequest,
    MulticastRequest,
    PushMessageRequest,
)

from kizuna.emulator import Emulator
from kizuna.emulator.insight import date_of

TOKEN = "test-access-token"
LINK = "https://shop.example.com/sale"
FLEX = {
    "type": "flex", "altText": "セール",
    "contents": {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
        {"type": "button", "action": {"type": "uri", "label": "見る", "uri": LINK}},
    ]}},
}


@pytest.fixture
async def insight(running) -> AsyncIterator[AsyncInsight]:
    async with InsightClient(InsightConfiguration(host=running.base_url, access_token=TOKEN)) as client:
        yield AsyncInsight(client)


def friends(emu: Emulator, count: int) -> list[str]:
    return [emu.add_user(f"友{i}", followed=True).user_id for i in range(count)]


async def multicast(line: AsyncMessagingApi, to: list[str], unit: str | None, messages: list[dict] | None = None) -> None:
    body = {"to": to, "messages": messages or [{"type": "text", "text": "こんにちは"}, FLEX]}
    if unit:
        body["customAggregationUnits"] = [unit]
    await line.multicast(MulticastRequest.from_dict(body), x_line_retry_key=str(uuid.uuid4()))


async def test_units_used_this_month_are_counted_and_listed(line, emu, clock) -> None:
    users = friends(emu, 2)
    await multicast(line, users, "spring_sale")
    await line.push_message(PushMessageRequest.from_dict({
        "to": users[0], "messages": [{"type": "text", "text": "個別"}], "customAggregationUnits": ["step_day3"],
    }))
    await multicast(line, users, "spring_sale")
    assert (await line.get_aggregation_unit_usage()).num_of_custom_aggregation_units == 2
    assert (await line.get_aggregation_unit_name_list()).custom_aggregation_units == ["spring_sale", "step_day3"]
    page = await line.get_aggregation_unit_name_list(limit="1")
    assert page.custom_aggregation_units == ["spring_sale"] and page.next
    assert (await line.get_aggregation_unit_name_list(limit="1", start=page.next)).custom_aggregation_units == ["step_day3"]
    clock.advance(40 * 86400)  # next month: counted from zero again
    assert (await line.get_aggregation_unit_usage()).num_of_custom_aggregation_units == 0


async def test_unit_names_follow_lines_rules(line, emu, running, http) -> None:
    [user] = friends(emu, 1)
    for units, prop in (
        (["a", "b"], "customAggregationUnits"),
        (["has-dash"], "customAggregationUnits[0]"),
        (["x" * 31], "customAggregationUnits[0]"),
        ([""], "customAggregationUnits[0]"),
    ):
        async with http.post(running.url("/v2/bot/message/multicast"), headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"to": [user], "messages": [{"type": "text", "text": "x"}], "customAggregationUnits": units}) as r:
            assert r.status == 400, units
            assert [d["property"] for d in (await r.json())["details"]] == [prop]
    assert emu.messages_to(user) == []


async def test_a_month_allows_a_limited_number_of_distinct_units(line, emu) -> None:
    users = friends(emu, 1)
    emu.max_units_per_month = 2  # LINE: 1,000
    await multicast(line, users, "one")
    await multicast(line, users, "two")
    await multicast(line, users, "one")  # a name already used this month is free
    with pytest.raises(ApiException) as refused:
        await multicast(line, users, "three")
    assert refused.value.status == 400 and "limit" in json.loads(refused.value.body)["message"]


async def test_opens_and_clicks_are_reported_per_unit(line, emu, insight, clock) -> None:
    emu.insight_min_users = 0  # LINE withholds figures under 20 users; shown here for 3
    a, b, c = friends(emu, 3)
    await multicast(line, [a, b, c], "spring_sale")
    await multicast(line, [a], "other_unit")
    emu.open(a)  # the latest send to a: other_unit
    emu.open(a, emu.messages_to(a)[0])  # the first bubble of spring_sale
    emu.open(b)
    emu.click(b, LINK)
    emu.click(b, LINK)
    emu.click(c, LINK)
    today = date_of(clock())
    stats = await insight.get_statistics_per_unit("spring_sale", today, today)
    assert (stats.overview.unique_impression, stats.overview.unique_click) == (2, 2)
    assert [(m.seq, m.impression, m.unique_impression) for m in stats.messages] == [(1, 2, 2), (2, 1, 1)]
    assert [(k.seq, k.url, k.click, k.unique_click) for k in stats.clicks] == [(2, LINK, 3, 2)]
    other = await insight.get_statistics_per_unit("other_unit", today, today)
    assert other.overview.unique_impression == 1 and other.clicks == []
    earlier = await insight.get_statistics_per_unit("spring_sale", "20200101", "20200131")
    assert earlier.messages == [] and earlier.overview.unique_impression == 0


async def test_figures_about_fewer_than_20_users_are_withheld(line, emu, insight, clock) -> None:
    users = friends(emu, 20)
    await multicast(line, users, "big")
    for user in users[:19]:
        emu.open(user)
    today = date_of(clock())
    assert (await insight.get_statistics_per_unit("big", today, today)).overview.unique_impression is None
    emu.open(users[19])
    assert (await insight.get_statistics_per_unit("big", today, today)).overview.unique_impression == 20


async def test_the_period_is_checked(insight, running, http) -> None:
    for query in ("customAggregationUnit=x&from=20260101&to=20260301", "customAggregationUnit=x&from=20260201&to=20260101",
                  "customAggregationUnit=bad-name&from=20260101&to=20260101", "customAggregationUnit=x&from=2026-01-01&to=20260101"):
        async with http.get(running.url(f"/v2/bot/insight/message/event/aggregation?{query}"),
                            headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 400, query


async def test_the_chat_page_counts_opens_and_taps(line, emu, insight, running, http, clock) -> None:
    emu.insight_min_users = 0
    [user] = friends(emu, 1)
    await multicast(line, [user], "page")
    async with http.get(running.url(f"/api/users/{user}/timeline")) as r:
        items = (await r.json())["items"]
    assert [i["message"]["type"] for i in items] == ["text", "flex"]  # the chat shows the multicast
    async with http.post(running.url(f"/api/users/{user}/click"), json={"url": LINK}) as r:
        assert r.status == 200
    today = date_of(clock())
    stats = await insight.get_statistics_per_unit("page", today, today)
    assert stats.overview.unique_impression == 1 and stats.clicks[0].click == 1


async def test_a_broadcasts_figures_by_request_id(line, emu, insight) -> None:
    emu.insight_min_users = 0
    users = friends(emu, 2)
    response = await line.broadcast_with_http_info(BroadcastRequest.from_dict({"messages": [FLEX]}))
    request_id = response.headers["x-line-request-id"]
    emu.click(users[0], LINK)
    event = await insight.get_message_event(request_id)
    assert event.overview.request_id == request_id and event.overview.delivered == 2
    assert event.clicks[0].unique_click == 1
