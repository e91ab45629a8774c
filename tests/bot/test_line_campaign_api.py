"""LineClient's campaign calls against the emulator over HTTP: narrowcast, audiences,
aggregation units and insight."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from kizuna.bot.line import LineClient, LineError, RetryPolicy
from kizuna.bot.ratelimit import LINE_RATE_LIMITS, InProcessRateLimiter
from kizuna.emulator.insight import JST
from tests.conftest import ACCESS_TOKEN, eventually

TEXT = [{"type": "text", "text": "春のセール"}]
LINK = "https://shop.example.com/spring"


@pytest.fixture
async def line(emulator):
    client = LineClient(
        access_token=ACCESS_TOKEN, api_base_url=emulator.base_url, data_api_base_url=emulator.base_url,
        timeout=2.0, retry=RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05),
        # LINE's 60 narrowcasts an hour would hold a retry a minute: the pacing has tests of its own.
        limiter=InProcessRateLimiter({**LINE_RATE_LIMITS, "narrowcast": 100.0, "audience": 100.0}),
    )
    yield client
    await client.close()


def friends(emulator, count: int, prefix: str = "友") -> list[str]:
    return [emulator.add_user(display_name=f"{prefix}{i}", followed=True).user_id for i in range(count)]


async def until_ready(line: LineClient, audience_id: int) -> dict:
    async def ready() -> bool:
        return (await line.get_audience(audience_id))["audienceGroup"]["status"] == "READY"

    await eventually(ready, timeout=5, what="the audience to be READY")
    return await line.get_audience(audience_id)


async def until_done(line: LineClient, request_id: str) -> dict:
    async def done() -> bool:
        return (await line.get_narrowcast_progress(request_id))["phase"] in ("succeeded", "failed")

    await eventually(done, timeout=5, what="the narrowcast to finish")
    return await line.get_narrowcast_progress(request_id)


async def test_narrowcast_to_an_uploaded_audience_reaches_its_members_once(line, emulator) -> None:
    members = friends(emulator, 60)
    others = friends(emulator, 5, "他")
    audience_id = await line.create_audience("春のセール対象", members)
    assert (await until_ready(line, audience_id))["audienceGroup"]["audienceCount"] == 60

    key = str(uuid.uuid4())
    emulator.fail_next("narrowcast", status=500, after_executing=True)  # accepted, answer lost
    request_id = await line.narrowcast(TEXT, retry_key=key, recipient={"type": "audience", "audienceGroupId": audience_id})
    # The retry got 409: the id returned is the accepted request's, whose progress is real.
    assert [r.status for r in emulator.requests_to("narrowcast")] == [500, 409]
    assert request_id == emulator.requests_to("narrowcast")[0].request_id
    progress = await until_done(line, request_id)
    assert (progress["phase"], progress["targetCount"], progress["successCount"]) == ("succeeded", 60, 60)
    assert all(len(emulator.messages_to(u)) == 1 for u in members)
    assert all(emulator.messages_to(u) == [] for u in others)


async def test_a_big_audience_goes_as_a_file_and_more_ids_in_chunks(line, emulator) -> None:
    members = friends(emulator, 10_050)
    audience_id = await line.create_audience("大きい", members[:10_001])  # above 10,000: by file
    assert emulator.requests_to("audience_create_by_file")
    await line.add_to_audience(audience_id, members[10_001:])

    async def all_in() -> bool:
        data = await line.get_audience(audience_id)
        return data["audienceGroup"]["audienceCount"] == 10_050

    await eventually(all_in, timeout=10, what="every member in the audience")


async def test_an_unknown_audience_is_none_and_deleting_twice_is_fine(line, emulator) -> None:
    audience_id = await line.create_audience("消す", [])
    await line.delete_audience(audience_id)
    await line.delete_audience(audience_id)
    assert await line.get_audience(audience_id) is None


async def test_narrowcast_is_refused_with_lines_reason(line, emulator) -> None:
    with pytest.raises(LineError) as refused:
        await line.narrowcast(TEXT, retry_key=str(uuid.uuid4()), limit={"forbidPartialDelivery": True})
    assert refused.value.status == 400
    assert refused.value.details[0]["property"] == "limit.forbidPartialDelivery"


async def test_units_on_multicast_and_push_and_their_insight(line, emulator) -> None:
    emulator.insight_min_users = 0  # LINE hides figures about fewer than 20 users
    a, b = friends(emulator, 2)
    flex = {"type": "flex", "altText": "セール", "contents": {"type": "bubble", "body": {
        "type": "box", "layout": "vertical",
        "contents": [{"type": "button", "action": {"type": "uri", "label": "見る", "uri": LINK}}],
    }}}
    await line.multicast([a, b], [flex], retry_key=str(uuid.uuid4()), custom_aggregation_unit="spring_2026")
    await line.push(a, TEXT, retry_key=str(uuid.uuid4()), custom_aggregation_unit="step_day3")
    assert emulator.requests_to("multicast")[0].json["customAggregationUnits"] == ["spring_2026"]
    assert await line.get_aggregation_unit_usage() == 2
    assert await line.get_aggregation_unit_names() == ["spring_2026", "step_day3"]

    emulator.open(a, emulator.messages_to(a)[0])
    emulator.click(b, LINK)
    today = dt.datetime.now(JST).date()
    stats = await line.get_statistics_per_unit("spring_2026", today, today)
    assert stats["overview"]["uniqueImpression"] == 1 and stats["overview"]["uniqueClick"] == 1
    assert stats["clicks"][0]["url"] == LINK and stats["clicks"][0]["click"] == 1


async def test_a_bad_unit_name_is_a_validation_error(line, emulator) -> None:
    [user] = friends(emulator, 1)
    with pytest.raises(LineError) as refused:
        await line.push(user, TEXT, retry_key=str(uuid.uuid4()), custom_aggregation_unit="spring-sale")
    assert refused.value.status == 400
    assert refused.value.details[0]["property"] == "customAggregationUnits[0]"
