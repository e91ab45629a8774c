"""Friend-add sources (流入経路) end to end over real HTTP: a source's link, the emulated LINE Login
with the add-friend option, the follow webhook, the attribution, its tag and the counts."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.bot import friend_links
from kizuna.storage import friend_sources, tags
from kizuna.storage.models import FriendSource, FriendSourceAttribution, FriendSourceVisit
from tests.conftest import SECRET_KEY, eventually, make_settings

LOGIN_ID, LOGIN_SECRET = "1650000000", "test-login-channel-secret"


@pytest.fixture
def emulator_login(emulator):
    emulator.login_channel_id, emulator.login_channel_secret = LOGIN_ID, LOGIN_SECRET
    return emulator


@pytest.fixture
def settings(database_url, emulator_login, redis_prefix, redis_cleanup):
    return make_settings(database_url, emulator_login.base_url, redis_prefix=redis_prefix, line_login_channel_id=LOGIN_ID,
                         line_login_channel_secret=LOGIN_SECRET, line_login_base_url=emulator_login.base_url,
                         line_basic_id="@kizuna")


async def create_source(kizuna, name="店頭POP", tag="店頭") -> dict:
    status, body = await kizuna.api("POST", "/api/v1/friend-sources", json={"name": name, "tag": tag})
    assert status == 201, body
    return body


async def counts(kizuna, code: str) -> dict:
    status, body = await kizuna.api("GET", "/api/v1/friend-sources?archived=true")
    assert status == 200, body
    return next(item for item in body["items"] if item["code"] == code)


async def login_through(kizuna, code: str, *, user_id: str = "", display_name: str = "", add_friend: bool = True,
                        action: str = "allow", before_callback=None):
    """Open the source's link and go through the emulated LINE Login as a browser would; the
    callback's (status, text, Location). `before_callback` is awaited between LINE's redirect and
    the browser following it."""
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{kizuna.url}/f/{code}", allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            authorize = response.headers["Location"]
        query = dict(parse_qsl(urlsplit(authorize).query))
        assert authorize.startswith(kizuna.emulator.base_url + "/oauth2/v2.1/authorize")
        assert query["bot_prompt"] == "aggressive" and query["client_id"] == LOGIN_ID and query["redirect_uri"].endswith("/f/callback")
        async with client.get(authorize) as response:
            assert response.status == 200 and "友だち追加" in await response.text()
        form = {**query, "action": action, "user_id": user_id, "display_name": display_name}
        if add_friend:
            form["add_friend"] = "1"
        async with client.post(authorize.split("?")[0], data=form, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            callback = response.headers["Location"]
        if before_callback is not None:
            await before_callback()
        async with client.get(callback, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers.get("Location")


async def attribution_of(kizuna, line_user_id: str):
    async with kizuna.sessions() as session:
        return await session.get(FriendSourceAttribution, line_user_id)


async def test_a_friend_added_through_a_source_carries_it_and_its_tag(kizuna):
    source = await create_source(kizuna)
    assert source["url"].endswith(f"/f/{source['code']}") and len(source["code"]) == 10
    status, page, _ = await login_through(kizuna, source["code"], display_name="山田 花子")
    assert status == 200 and "友だち追加ありがとうございます" in page
    user = next(u for u in kizuna.emulator.users.values() if u.display_name == "山田 花子")
    assert user.followed  # the emulator sent the follow webhook

    async def resolved() -> bool:
        found = await attribution_of(kizuna, user.user_id)
        return found is not None and found.resolved_at is not None

    await eventually(resolved, what="the attribution resolved")
    customer_id = await kizuna.customer_id(user.user_id)
    async with kizuna.sessions() as session:
        assert (await friend_sources.of_customer(session, customer_id)).code == source["code"]
        assert "店頭" in await tags.of_customer(session, customer_id)
    figures = await counts(kizuna, source["code"])
    assert (figures["clicks"], figures["follows"], figures["blocks"], figures["friends"]) == (1, 1, 0, 1)

    # segment rule by code (and by name) counts the customer
    for value in (source["code"], "店頭POP"):
        status, body = await kizuna.api("POST", "/api/v1/segments/preview", json={"rule": {"field": "friend_source", "op": "eq", "value": value}})
        assert status == 200 and body["count"] == 1 and body["sample"][0]["id"] == customer_id, body
    status, body = await kizuna.api("POST", "/api/v1/segments/preview", json={"rule": {"field": "friend_source", "op": "eq", "value": "other"}})
    assert body["count"] == 0

    await kizuna.emulator.unfollow(user.user_id)

    async def blocked() -> bool:
        return (await counts(kizuna, source["code"]))["blocks"] == 1

    await eventually(blocked, what="the block counted")
    figures = await counts(kizuna, source["code"])
    assert (figures["follows"], figures["blocks"], figures["friends"]) == (1, 1, 0)


async def test_a_refollow_through_another_source_keeps_the_first(kizuna):
    first, second = await create_source(kizuna, "Instagram", None), await create_source(kizuna, "チラシ", "チラシ")
    await login_through(kizuna, first["code"], display_name="佐藤")
    user = next(iter(kizuna.emulator.users.values()))

    async def resolved() -> bool:
        found = await attribution_of(kizuna, user.user_id)
        return found is not None and found.resolved_at is not None

    await eventually(resolved, what="the first attribution")
    await kizuna.emulator.unfollow(user.user_id)
    status, page, _ = await login_through(kizuna, second["code"], user_id=user.user_id)
    assert status == 200 and user.followed
    async with kizuna.sessions() as session:
        visits = (await session.execute(sa.select(FriendSourceVisit.source_id, FriendSourceVisit.attributed)
                                        .order_by(FriendSourceVisit.id))).all()
    assert visits == [(first["id"], True), (second["id"], False)]
    assert (await attribution_of(kizuna, user.user_id)).source_id == first["id"]
    assert (await counts(kizuna, second["code"]))["follows"] == 0


async def test_someone_not_a_friend_yet_is_sent_to_add_and_attributed_on_follow(kizuna):
    source = await create_source(kizuna, "名刺", "名刺")
    status, _, location = await login_through(kizuna, source["code"], display_name="鈴木", add_friend=False)
    assert status == 302 and unquote(location) == "https://line.me/R/ti/p/@kizuna"
    user = next(iter(kizuna.emulator.users.values()))
    pending = await attribution_of(kizuna, user.user_id)
    assert pending is not None and pending.resolved_at is None
    assert (await counts(kizuna, source["code"]))["follows"] == 0
    await kizuna.emulator.follow(user.user_id)  # added later, from the add-friend page

    async def tagged() -> bool:
        found = await attribution_of(kizuna, user.user_id)
        return found is not None and found.resolved_at is not None

    await eventually(tagged, what="the follow resolving the attribution")
    async with kizuna.sessions() as session:
        assert "名刺" in await tags.of_customer(session, await kizuna.customer_id(user.user_id))


async def test_a_friend_of_long_standing_is_a_visit_not_a_follow(kizuna):
    source = await create_source(kizuna, "ポスター", None)
    user = kizuna.emulator.add_user("古い友だち")
    await kizuna.emulator.follow(user.user_id)
    status, page, _ = await login_through(kizuna, source["code"], user_id=user.user_id)
    assert status == 200 and "友だち追加ありがとうございます" in page
    assert await attribution_of(kizuna, user.user_id) is None
    figures = await counts(kizuna, source["code"])
    assert (figures["clicks"], figures["follows"]) == (1, 0)


async def test_forged_or_expired_state_is_400_and_records_nothing(kizuna):
    source = await create_source(kizuna)
    forged, _ = friend_links.sign_state("another-secret-key-" + "y" * 32, source["id"])
    expired, _ = friend_links.sign_state(SECRET_KEY, source["id"], now=1_000_000, ttl=60)
    good, _ = friend_links.sign_state(SECRET_KEY, source["id"])
    tampered = good.replace(f"{source['id']}.", f"{source['id'] + 1}.", 1)
    async with aiohttp.ClientSession() as client:
        for state in (forged, expired, tampered, "", "a.b.c.d"):
            async with client.get(f"{kizuna.url}/f/callback", params={"state": state, "code": "x", "friendship_status_changed": "true"},
                                  allow_redirects=False) as response:
                assert response.status == 400, state
                assert "無効" in await response.text()
    async with kizuna.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(FriendSourceVisit))).scalar_one() == 0
        assert (await session.execute(sa.select(sa.func.count()).select_from(FriendSourceAttribution))).scalar_one() == 0
    assert kizuna.emulator.login.grants == {}  # never reached LINE


async def test_a_code_that_lines_token_endpoint_refuses_is_400(kizuna):
    source = await create_source(kizuna)
    state, _ = friend_links.sign_state(SECRET_KEY, source["id"])
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{kizuna.url}/f/callback", params={"state": state, "code": "not-a-code"}) as response:
            assert response.status == 400
    async with kizuna.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(FriendSourceVisit))).scalar_one() == 0


async def test_unknown_code_is_404_and_counts_nothing(kizuna):
    source = await create_source(kizuna)
    async with aiohttp.ClientSession() as client:
        for code in ("nosuchcode", "x" * 200, "%27%20OR%201=1"):
            async with client.get(f"{kizuna.url}/f/{code}", allow_redirects=False) as response:
                assert response.status == 404
    assert (await counts(kizuna, source["code"]))["clicks"] == 0


async def test_api_refuses_a_bad_source(kizuna):
    for body in ({"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": "ok", "tag": "t" * 41}, {"name": "ok", "extra": 1}):
        status, answer = await kizuna.api("POST", "/api/v1/friend-sources", json=body)
        assert status == 400, (body, answer)
    status, body = await kizuna.api("GET", "/api/v1/friend-sources")
    assert status == 200 and body["items"] == []


async def test_follow_processed_before_the_callback_is_resolved_by_the_callback(kizuna):
    source = await create_source(kizuna, "LP", "LP経由")
    user = kizuna.emulator.add_user("先にフォロー")

    async def follow_processed() -> None:
        async def stored() -> bool:
            status, body = await kizuna.api("GET", f"/api/v1/customers?line_user_id={user.user_id}")
            return bool(body.get("items")) and body["items"][0]["followed"]

        await eventually(stored, what="the follow processed")
        assert await attribution_of(kizuna, user.user_id) is None  # the follow alone knows no source

    status, page, _ = await login_through(kizuna, source["code"], user_id=user.user_id, before_callback=follow_processed)
    assert status == 200 and "友だち追加ありがとうございます" in page
    found = await attribution_of(kizuna, user.user_id)
    assert found.resolved_at is not None and found.customer_id == await kizuna.customer_id(user.user_id)
    async with kizuna.sessions() as session:
        assert "LP経由" in await tags.of_customer(session, found.customer_id)
    assert (await counts(kizuna, source["code"]))["follows"] == 1


async def test_a_cancelled_login_records_nothing(kizuna):
    source = await create_source(kizuna)
    status, page, _ = await login_through(kizuna, source["code"], display_name="やめた人", action="cancel")
    assert status == 200 and "キャンセル" in page
    assert kizuna.emulator.users == {}  # cancelled before logging in: nobody, no follow
    async with kizuna.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(FriendSourceVisit))).scalar_one() == 0
    figures = await counts(kizuna, source["code"])
    assert (figures["clicks"], figures["follows"]) == (1, 0)
