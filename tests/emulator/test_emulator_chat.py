"""The chat page's JSON API, the page's files, and the admin routes."""

from __future__ import annotations

import re
from pathlib import Path

from linebot.v3.messaging import AsyncMessagingApi, PushMessageRequest, ReplyMessageRequest, TextMessage

import kizuna.emulator
from kizuna.emulator import Emulator
from kizuna.emulator.testing import FakeBot

STATIC = Path(kizuna.emulator.__file__).parent / "static"
XSS = "<img src=x onerror=alert(1)>"


async def get(http, url: str) -> dict:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def post(http, url: str, body: dict | None = None, status: int = 200) -> dict:
    async with http.post(url, json=body or {}) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def test_page_is_served_with_relative_urls(running, http) -> None:
    async with http.get(running.url("/")) as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        html = await r.text()
    assert 'lang="ja"' in html
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not ref.startswith(("/", "http:", "https:")), ref  # works under any mount prefix
    for name in ("app.js", "style.css"):
        async with http.get(running.url(f"/static/{name}")) as r:
            assert r.status == 200


async def test_user_flow_through_the_page_api(running, http, emu: Emulator, bot: FakeBot, line: AsyncMessagingApi) -> None:
    base = running.url("/api")
    created = await post(http, f"{base}/users", {"display_name": "山田 花子"}, status=201)
    uid = created["user_id"]
    assert re.fullmatch(r"U[0-9a-f]{32}", uid) and created["followed"] is False
    assert (await get(http, f"{base}/users"))["users"][0]["display_name"] == "山田 花子"

    # Not a friend yet: the page cannot talk.
    await post(http, f"{base}/users/{uid}/text", {"text": "x"}, status=409)
    assert (await post(http, f"{base}/users/{uid}/follow"))["ok"] is True
    assert (await post(http, f"{base}/users/{uid}/text", {"text": "こんにちは"}))["status"] == 200
    await post(http, f"{base}/users/{uid}/sticker", {"package_id": "446", "sticker_id": "1989"})
    await post(http, f"{base}/users/{uid}/location", {"title": "店", "address": "東京", "latitude": 35.6, "longitude": 139.7})
    await post(http, f"{base}/users/{uid}/postback", {"data": "action=birthday", "params": {"date": "1990-01-31"}, "displayText": "1990-01-31"})
    await post(http, f"{base}/users/{uid}/image")
    types = [(e["type"], (e.get("message") or {}).get("type")) for e in bot.events]
    assert types == [("follow", None), ("message", "text"), ("message", "sticker"), ("message", "location"),
                     ("postback", None), ("message", "image")]
    assert bot.events[4]["postback"] == {"data": "action=birthday", "params": {"date": "1990-01-31"}}

    # The bot answers: a reply and a push both show up, tagged.
    await line.reply_message(ReplyMessageRequest(reply_token=bot.events[1]["replyToken"], messages=[TextMessage(text="いらっしゃいませ")]))
    await line.push_message(PushMessageRequest(to=uid, messages=[TextMessage(text="クーポンです")]))
    timeline = await get(http, f"{base}/users/{uid}/timeline?after=0")
    items = timeline["items"]
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs) and timeline["last_seq"] == seqs[-1]
    bot_items = [i for i in items if i["side"] == "bot"]
    assert [(i["via"], i["message"]["text"]) for i in bot_items] == [("reply", "いらっしゃいませ"), ("push", "クーポンです")]
    postback_item = next(i for i in items if i["side"] == "user" and i["event"]["type"] == "postback")
    assert postback_item["displayText"] == "1990-01-31"

    # after=N returns only what is newer.
    newer = await get(http, f"{base}/users/{uid}/timeline?after={seqs[-2]}")
    assert [i["seq"] for i in newer["items"]] == [seqs[-1]]

    assert (await post(http, f"{base}/users/{uid}/unfollow"))["ok"]
    assert (await get(http, f"{base}/users"))["users"][0]["blocked"] is True
    await post(http, f"{base}/users/{uid}/follow")
    assert bot.events[-1]["follow"] == {"isUnblocked": True}


async def test_failed_webhook_is_shown_and_event_kept(running, http, emu: Emulator, bot: FakeBot) -> None:
    base = running.url("/api")
    uid = (await post(http, f"{base}/users", {"display_name": "障害"}, status=201))["user_id"]
    await post(http, f"{base}/users/{uid}/follow")
    bot.status = 500
    result = await post(http, f"{base}/users/{uid}/text", {"text": "届いていますか"})
    assert result == {"ok": False, "status": 500, "error": None}
    items = (await get(http, f"{base}/users/{uid}/timeline"))["items"]
    assert items[-2]["side"] == "user" and items[-2]["event"]["message"]["text"] == "届いていますか"
    assert items[-1]["side"] == "system" and items[-1]["kind"] == "error" and "500" in items[-1]["text"]


async def test_page_api_returns_markup_raw(running, http, emu: Emulator, bot: FakeBot, line: AsyncMessagingApi) -> None:
    """Hostile strings travel as data; the page must render them as text (checked below and in
    the browser test)."""
    base = running.url("/api")
    uid = (await post(http, f"{base}/users", {"display_name": XSS}, status=201))["user_id"]
    await post(http, f"{base}/users/{uid}/follow")
    await post(http, f"{base}/users/{uid}/text", {"text": XSS})
    await line.push_message(PushMessageRequest(to=uid, messages=[TextMessage(text=XSS)]))
    users = await get(http, f"{base}/users")
    assert users["users"][0]["display_name"] == XSS
    items = (await get(http, f"{base}/users/{uid}/timeline"))["items"]
    assert [i["message"]["text"] for i in items if i["side"] == "bot"] == [XSS]
    assert [i["event"]["message"]["text"] for i in items if i["side"] == "user" and i["event"]["type"] == "message"] == [XSS]


def test_page_script_never_parses_data_as_html() -> None:
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    code = "\n".join(line for line in script.splitlines() if not line.strip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "createContextualFragment", "DOMParser"):
        assert sink not in code, sink
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # nothing from a CDN: the machine is offline


async def test_page_api_errors(running, http) -> None:
    base = running.url("/api")
    await post(http, f"{base}/users", {"display_name": ""}, status=400)
    await post(http, f"{base}/users/U{'0' * 32}/follow", status=404)
    async with http.get(f"{base}/users/U{'0' * 32}/timeline") as r:
        assert r.status == 404


async def test_rich_menu_for_the_page(running, http, emu: Emulator, line: AsyncMessagingApi, blob) -> None:
    from linebot.v3.messaging import MessageAction, RichMenuArea, RichMenuBounds, RichMenuRequest, RichMenuSize

    from kizuna.emulator.images import png

    uid = emu.add_user("メニュー", followed=True).user_id
    assert (await get(http, running.url(f"/api/users/{uid}/richmenu")))["richmenu"] is None
    menu_id = (await line.create_rich_menu(RichMenuRequest(
        size=RichMenuSize(width=2500, height=843), selected=False, name="m", chat_bar_text="タップ",
        areas=[RichMenuArea(bounds=RichMenuBounds(x=0, y=0, width=2500, height=843), action=MessageAction(label="a", text="メニュー"))],
    ))).rich_menu_id
    await blob.set_rich_menu_image(menu_id, body=png(10, 10), _headers={"Content-Type": "image/png"})
    await line.set_default_rich_menu(menu_id)
    menu = (await get(http, running.url(f"/api/users/{uid}/richmenu")))["richmenu"]
    assert menu["richMenuId"] == menu_id and menu["chatBarText"] == "タップ"
    async with http.get(running.url(f"/api/richmenus/{menu_id}/image")) as r:
        assert r.status == 200 and r.content_type == "image/png"


async def test_admin_routes(running, http, emu: Emulator, line: AsyncMessagingApi) -> None:
    base = running.url("/api/admin")
    created = await post(http, f"{base}/users/bulk", {"count": 3}, status=201)
    assert len(created["user_ids"]) == 3 and all(emu.users[u].followed for u in created["user_ids"])
    await post(http, f"{base}/fail_next", {"endpoint": "push", "status": 502})
    await post(http, f"{base}/quota", {"limit": 10})
    uid = created["user_ids"][0]
    async with http.post(running.url("/v2/bot/message/push"), json={"to": uid, "messages": [{"type": "text", "text": "x"}]},
                         headers={"Authorization": "Bearer test-access-token"}) as r:
        assert r.status == 502
    await line.push_message(PushMessageRequest(to=uid, messages=[TextMessage(text="y")]))
    stats = await get(http, f"{base}/stats")
    assert stats["requests"] == {"push 502": 1, "push 200": 1} and stats["quota_used"] == 1
    log = await get(http, f"{base}/requests")
    assert [r["status"] for r in log["requests"]] == [502, 200] and log["next"] == 2
    messages = await get(http, f"{base}/messages/{uid}")
    assert [m["message"]["text"] for m in messages["messages"]] == ["y"]
    await post(http, f"{base}/rate_limit", {"endpoint": "push", "per_second": 1})
    await post(http, f"{base}/expire_reply_tokens")
