"""Narrowcast: audiences, and/or/not, demographic filters, limits, progress and retry keys."""

from __future__ import annotations

import json
import uuid

import pytest
from linebot.v3.messaging import ApiException, AsyncMessagingApi, NarrowcastRequest

from kizuna.emulator import Emulator
from kizuna.emulator.audience import Audience
from tests.conftest import eventually

TEXT = [{"type": "text", "text": "セールのお知らせ"}]


def audience(emu: Emulator, user_ids: list[str]) -> int:
    """A READY audience, made directly (test_emulator_audience.py covers the upload API)."""
    group = Audience(len(emu.audiences) + 1_000_000_000_000, "テスト", 0, "READY", set(user_ids))
    emu.audiences[group.audience_group_id] = group
    return group.audience_group_id


def friends(emu: Emulator, count: int, prefix: str = "友", **attributes) -> list[str]:
    return [emu.add_user(f"{prefix}{i}", followed=True, **attributes).user_id for i in range(count)]


async def narrowcast(line: AsyncMessagingApi, body: dict, key: str | None = None) -> str:
    response = await line.narrowcast_with_http_info(NarrowcastRequest.from_dict({"messages": TEXT, **body}),
                                                    x_line_retry_key=key)
    assert response.status_code == 202
    return response.headers["x-line-request-id"]


async def finished(line: AsyncMessagingApi, request_id: str):
    async def done() -> bool:
        return (await line.get_narrowcast_progress(request_id)).phase in ("succeeded", "failed")

    await eventually(done, timeout=5, what="the narrowcast to finish")
    return await line.get_narrowcast_progress(request_id)


def receivers(emu: Emulator, user_ids: list[str]) -> set[str]:
    return {u for u in user_ids if any(d.via == "narrowcast" for d in emu.messages_to(u))}


async def test_an_audience_reaches_its_friends_only_and_progress_moves_through_the_phases(line, emu) -> None:
    members = friends(emu, 60)
    blocked = members[:5]
    for user_id in blocked:
        emu.users[user_id].followed, emu.users[user_id].blocked = False, True
    outsiders = friends(emu, 10, "他")
    emu.narrowcast_wait_seconds = 0.5  # long enough to read "waiting" first, even on a busy machine
    request_id = await narrowcast(line, {"recipient": {"type": "audience", "audienceGroupId": audience(emu, members)}})

    waiting = await line.get_narrowcast_progress(request_id)
    assert waiting.phase == "waiting" and waiting.accepted_time is not None and waiting.target_count is None
    progress = await finished(line, request_id)
    assert (progress.phase, progress.target_count, progress.success_count, progress.failure_count) == ("succeeded", 55, 55, 0)
    assert progress.completed_time is not None
    assert receivers(emu, members + outsiders) == set(members[5:])
    assert emu.quota_used == 55


async def test_a_big_send_reports_sending_with_partial_counts_before_it_succeeds(line, emu) -> None:
    members = friends(emu, 2000)
    emu.narrowcast_chunk = 100
    emu.narrowcast_wait_seconds = 1.0  # time enough to be waiting for "sending", even on a busy machine
    request_id = await narrowcast(line, {"recipient": {"type": "audience", "audienceGroupId": audience(emu, members)}})
    condition = emu._cond()
    async with condition:
        await condition.wait_for(lambda: emu.narrowcasts[request_id]["phase"] != "waiting")
    # The sender yields between chunks: the API can answer while the send is under way.
    during = dict(emu.narrowcasts[request_id])
    assert during["phase"] == "sending" and during["targetCount"] == 2000
    assert during["successCount"] < 2000 and "completedTime" not in during
    assert (await finished(line, request_id)).success_count == 2000


async def test_and_or_not_combine_audiences(line, emu) -> None:
    a = friends(emu, 60, "A")
    b = friends(emu, 60, "B")
    both = a[:20]
    group_a, group_b = audience(emu, a), audience(emu, b + both)
    everyone = a + b
    request_id = await narrowcast(line, {"recipient": {"type": "operator", "and": [
        {"type": "audience", "audienceGroupId": group_a},
        {"type": "operator", "not": {"type": "audience", "audienceGroupId": group_b}},
    ]}})
    assert (await finished(line, request_id)).success_count == 40
    assert receivers(emu, everyone) == set(a[20:])

    request_id = await narrowcast(line, {"recipient": {"type": "operator", "or": [
        {"type": "audience", "audienceGroupId": group_a}, {"type": "audience", "audienceGroupId": group_b},
    ]}})
    assert (await finished(line, request_id)).target_count == 120


async def test_an_audience_under_50_fails_with_code_4(line, emu) -> None:
    request_id = await narrowcast(line, {"recipient": {"type": "audience", "audienceGroupId": audience(emu, friends(emu, 49))}})
    progress = await finished(line, request_id)
    assert progress.phase == "failed" and progress.error_code == 4 and "50" in progress.failed_description
    assert emu.quota_used == 0


async def test_demographic_filter_matches_known_attributes_only(line, emu) -> None:
    women_20s = friends(emu, 3, "女", gender="female", age=24, area="jp_13", app_type="ios")
    women_40s = friends(emu, 2, "年上", gender="female", age=45, area="jp_13")
    men = friends(emu, 2, "男", gender="male", age=24)
    unknown = friends(emu, 2, "不明")
    request_id = await narrowcast(line, {"filter": {"demographic": {"type": "operator", "and": [
        {"type": "gender", "oneOf": ["female"]},
        {"type": "age", "gte": "age_20", "lt": "age_30"},
        {"type": "area", "oneOf": ["jp_13", "jp_27"]},
    ]}}})
    assert (await finished(line, request_id)).success_count == 3
    assert receivers(emu, women_20s + women_40s + men + unknown) == set(women_20s)


async def test_subscription_period_counts_days_since_following(line, emu, clock) -> None:
    old = friends(emu, 2, "古参")
    clock.advance(10 * 86400)
    new = friends(emu, 2, "新規")
    request_id = await narrowcast(line, {"filter": {"demographic": {"type": "subscriptionPeriod", "gte": "day_7"}}})
    await finished(line, request_id)
    assert receivers(emu, old + new) == set(old)


async def test_limit_max_and_remaining_quota(line, emu) -> None:
    everyone = friends(emu, 10)
    request_id = await narrowcast(line, {"limit": {"max": 3}})
    assert (await finished(line, request_id)).success_count == 3
    assert len(receivers(emu, everyone)) == 3

    emu.quota_limit = emu.quota_used + 4
    request_id = await narrowcast(line, {"limit": {"upToRemainingQuota": True}})
    assert (await finished(line, request_id)).target_count == 4
    assert emu.quota_used == emu.quota_limit

    emu.quota_limit += 2
    request_id = await narrowcast(line, {"limit": {"upToRemainingQuota": True, "forbidPartialDelivery": True}})
    progress = await finished(line, request_id)
    assert progress.phase == "failed" and progress.error_code == 5


async def test_nobody_matching_fails_with_code_2(line, emu) -> None:
    friends(emu, 3, gender="male")
    request_id = await narrowcast(line, {"filter": {"demographic": {"type": "gender", "oneOf": ["female"]}}})
    progress = await finished(line, request_id)
    assert progress.phase == "failed" and progress.error_code == 2


async def test_invalid_recipients_filters_and_limits_are_refused(line, emu, running, http) -> None:
    friends(emu, 1)
    cases = [
        ({"recipient": {"type": "redelivery", "requestId": "x"}}, "redelivery"),
        ({"recipient": {"type": "audience", "audienceGroupId": 42}}, "audience group not found"),
        ({"recipient": {"type": "operator", "and": []}}, "recipient.and"),
        ({"filter": {"demographic": {"type": "age", "gte": "age_33"}}}, "filter.demographic.gte"),
        ({"filter": {"demographic": {"type": "gender", "oneOf": ["other"]}}}, "filter.demographic.oneOf[0]"),
        ({"limit": {"max": 0}}, "limit.max"),
        ({"limit": {"forbidPartialDelivery": True}}, "limit.forbidPartialDelivery"),
    ]
    for body, expected in cases:
        async with http.post(running.url("/v2/bot/message/narrowcast"), json={"messages": TEXT, **body},
                             headers={"Authorization": "Bearer test-access-token"}) as response:
            assert response.status == 400, body
            assert expected in json.dumps(await response.json(), ensure_ascii=False), body
    assert emu.narrowcasts == {}


async def test_a_retried_narrowcast_is_409_pointing_at_the_accepted_request(line, emu) -> None:
    everyone = friends(emu, 3)
    key = str(uuid.uuid4())
    first = await narrowcast(line, {}, key)
    with pytest.raises(ApiException) as again:
        await narrowcast(line, {}, key)
    assert again.value.status == 409
    assert again.value.headers["x-line-accepted-request-id"] == first
    await finished(line, first)
    assert all(len(emu.messages_to(u)) == 1 for u in everyone)
