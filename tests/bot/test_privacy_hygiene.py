"""Hygiene found on the way (issue 16 part 7), end to end with the emulator over HTTP: a LINE
pictureUrl that is not https: is never stored; the emulator's pages send a Content-Security-
Policy; every LINE call is logged with its method, path, status and x-line-request-id (never
the token)."""

from __future__ import annotations

import logging

import aiohttp
import sqlalchemy as sa

from kizuna.storage.customers import https_url
from kizuna.storage.models import Customer
from tests.conftest import ACCESS_TOKEN, eventually

PICTURES = {
    "https://profile.line-scdn.net/0h1234": "https://profile.line-scdn.net/0h1234",
    "javascript:alert(document.cookie)": None,
    "JavaScript:alert(1)": None,
    "http://profile.line-scdn.net/0h1234": None,
    "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=": None,
    "https://": None,
    'https://example.com/"><script>': None,
    "https://user:pass@example.com/x.png": None,
}


def test_only_an_https_url_with_a_host_is_kept():
    assert {value: https_url(value) for value in PICTURES} == PICTURES
    assert https_url(None) is None and https_url("https://example.com/" + "a" * 2000) is None


async def test_a_profile_picture_that_is_not_https_is_never_stored(kizuna, emulator, caplog):
    caplog.set_level(logging.INFO, logger="kizuna.line.calls")
    users = {url: emulator.add_user(display_name="絵", picture_url=url) for url in PICTURES if url != "https://"}
    for user in users.values():
        await emulator.follow(user.user_id)

    async def stored() -> dict:
        async with kizuna.sessions() as session:
            rows = (await session.execute(sa.select(Customer.line_user_id, Customer.picture_url, Customer.profile_refreshed_at))).all()
        return {line_user_id: picture for line_user_id, picture, refreshed in rows if refreshed is not None}

    async def all_stored() -> bool:
        return len(await stored()) == len(users)

    await eventually(all_stored, what="every follower's profile")
    pictures = await stored()
    assert {url: pictures[user.user_id] for url, user in users.items()} == {url: PICTURES[url] for url in users}

    # Each profile fetch is logged: method, path, status, LINE's request id; never the token.
    lines = [record.getMessage() for record in caplog.records if record.name == "kizuna.line.calls"]
    profile_lines = [line for line in lines if line.startswith("LINE GET /v2/bot/profile/")]
    assert len(profile_lines) >= len(users), lines
    assert all(" -> 200 x-line-request-id=" in line and not line.endswith("=-") for line in profile_lines)
    assert not any(ACCESS_TOKEN in line for line in lines)


async def test_the_emulator_pages_send_a_content_security_policy(emulator):
    async with aiohttp.ClientSession() as client:
        async with client.get(emulator.base_url + "/") as response:
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
