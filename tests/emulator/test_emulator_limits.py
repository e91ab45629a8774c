"""Parameters LINE refuses with 400 rather than clamping or failing (issue 12): the webhook
test's `endpoint` (messaging-api.yml: string, maxLength 500, format uri) and the follower
ids' `limit` (maximum 1,000)."""

from __future__ import annotations

import pytest

from kizuna.emulator import Emulator
from kizuna.emulator.testing import FakeBot

TOKEN = "test-access-token"  # as in conftest.py
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def _test_webhook(running, http, body) -> tuple[int, dict]:
    async with http.post(running.url("/v2/bot/channel/webhook/test"), json=body, headers=HEADERS) as response:
        assert response.headers["x-line-request-id"]
        return response.status, await response.json()


@pytest.mark.parametrize("endpoint", [123, 1.5, True, {"url": "https://example.com"}, ["https://example.com"]])
async def test_webhook_test_refuses_an_endpoint_that_is_not_a_string(running, http, bot: FakeBot, endpoint) -> None:
    status, body = await _test_webhook(running, http, {"endpoint": endpoint})
    assert status == 400
    assert body == {"message": "The request body has 1 error(s)", "details": [{"message": "must be a string", "property": "endpoint"}]}
    assert bot.payloads == []


async def test_webhook_test_refuses_an_endpoint_over_500_characters(running, http, bot: FakeBot, emu: Emulator) -> None:
    padded = emu.webhook_url + "?pad="
    at_limit = padded + "x" * (500 - len(padded))
    status, body = await _test_webhook(running, http, {"endpoint": at_limit + "x"})
    assert status == 400
    assert body["details"] == [{"message": "Length must be between 0 and 500", "property": "endpoint"}]
    assert bot.payloads == []
    # 500 characters are fine.
    status, body = await _test_webhook(running, http, {"endpoint": at_limit})
    assert status == 200 and body["success"] is True and body["statusCode"] == 200
    assert bot.payloads[-1]["events"] == []


@pytest.mark.parametrize("endpoint", ["not a url", "ftp://example.com/callback", "http://example.com/callback"])
async def test_webhook_test_refuses_what_is_not_an_https_url(running, http, bot: FakeBot, endpoint) -> None:
    status, body = await _test_webhook(running, http, {"endpoint": endpoint})
    assert status == 400
    assert body["details"] == [{"message": "must be a valid HTTPS URL", "property": "endpoint"}]


async def test_webhook_test_reports_an_unusable_url_as_a_failed_test(running, http, bot: FakeBot) -> None:
    # A host label over 63 characters: a URL, but one no request can be made to.
    status, body = await _test_webhook(running, http, {"endpoint": "https://" + "a" * 100 + ".invalid/callback"})
    assert status == 200
    assert body["success"] is False and body["statusCode"] == 0 and body["reason"] != "OK"


@pytest.mark.parametrize("body", [{}, {"endpoint": ""}, None])
async def test_webhook_test_without_endpoint_uses_the_channel_url(running, http, bot: FakeBot, body) -> None:
    if body is None:
        async with http.post(running.url("/v2/bot/channel/webhook/test"), headers=HEADERS) as response:
            status, answer = response.status, await response.json()
    else:
        status, answer = await _test_webhook(running, http, body)
    assert status == 200 and answer["success"] is True
    assert bot.payloads[-1]["events"] == []


async def _followers(running, http, query: str) -> tuple[int, dict]:
    async with http.get(running.url("/v2/bot/followers/ids" + query), headers=HEADERS) as response:
        assert response.headers["x-line-request-id"]
        return response.status, await response.json()


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "5000", "abc", "1.5", "1e3", "99999999999999999999999"])
async def test_followers_refuses_a_limit_out_of_range(running, http, emu: Emulator, limit) -> None:
    emu.add_user("友", followed=True)
    status, body = await _followers(running, http, f"?limit={limit}")
    assert status == 400
    assert body == {"message": "The value for the 'limit' parameter must be an integer between 1 and 1000"}


@pytest.mark.parametrize("start", ["-1", "x"])
async def test_followers_refuses_a_bad_start(running, http, emu: Emulator, start) -> None:
    status, body = await _followers(running, http, f"?start={start}")
    assert status == 400 and "start" in body["message"]


async def test_followers_limits_at_the_edges(running, http, emu: Emulator) -> None:
    friends = [emu.add_user(f"友{i}", followed=True).user_id for i in range(3)]
    status, body = await _followers(running, http, "?limit=1")
    assert status == 200 and body["userIds"] == friends[:1] and body["next"]
    status, body = await _followers(running, http, f"?limit=1000&start={body['next']}")
    assert status == 200 and body["userIds"] == friends[1:] and "next" not in body
    status, body = await _followers(running, http, "")  # default 300
    assert status == 200 and body["userIds"] == friends
