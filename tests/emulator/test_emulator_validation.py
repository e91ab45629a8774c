"""LINE's request validation as the emulator reproduces it."""

from __future__ import annotations

import json

import pytest
from linebot.v3.messaging import (
    ApiException,
    AsyncMessagingApi,
    ErrorResponse,
    FlexBubble,
    FlexBox,
    FlexButton,
    FlexMessage,
    FlexText,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    TextMessage,
)

from kizuna.emulator import Emulator
from kizuna.emulator.validation import is_https_url, utf16_len, validate_messages, validate_rich_menu

TOKEN = "test-access-token"  # as in conftest.py


def props(messages: list) -> list[str]:
    return [d["property"] for d in validate_messages(messages)]


def text(t: str, **extra) -> dict:
    return {"type": "text", "text": t, **extra}


def flex(contents: dict, alt: str = "お知らせ") -> dict:
    return {"type": "flex", "altText": alt, "contents": contents}


def bubble_body(*components: dict) -> dict:
    return {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": list(components)}}


# --- the 400 answer itself ------------------------------------------------------------------


async def test_validation_error_shape_through_the_sdk(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("検証", followed=True)
    with pytest.raises(ApiException) as info:
        await line.push_message(PushMessageRequest(to=user.user_id, messages=[TextMessage(text="x" * 5001)]))
    assert info.value.status == 400
    body = json.loads(info.value.body)
    assert body["message"] == "The request body has 1 error(s)"
    assert body["details"] == [{"message": "Length must be between 1 and 5000", "property": "messages[0].text"}]
    parsed = ErrorResponse.from_json(info.value.body)
    assert parsed.details[0].var_property == "messages[0].text"
    assert emu.messages_to(user.user_id) == []


async def test_several_errors_are_counted(running, http) -> None:
    body = {"to": "U" + "0" * 32, "messages": [text(""), {"type": "sticker"}, {"type": "nope"}]}
    async with http.post(running.url("/v2/bot/message/push"), json=body,
                         headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 400
        got = await r.json()
    assert got["message"] == f"The request body has {len(got['details'])} error(s)"
    assert {d["property"] for d in got["details"]} == {
        "messages[0].text", "messages[1].packageId", "messages[1].stickerId", "messages[2].type"
    }


async def test_flex_through_the_sdk(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("フレックス", followed=True)
    ok = FlexMessage(
        alt_text="会員登録",
        contents=FlexBubble(body=FlexBox(layout="vertical", contents=[
            FlexText(text="会員登録", weight="bold", size="xl"),
            FlexButton(action=PostbackAction(label="登録する", data="action=register"), style="primary"),
        ])),
        quick_reply=QuickReply(items=[QuickReplyItem(action=PostbackAction(label="はい", data="yes"))]),
    )
    await line.push_message(PushMessageRequest(to=user.user_id, messages=[ok]))
    sent = emu.messages_to(user.user_id)[0].message
    assert sent["contents"]["body"]["contents"][1]["action"]["data"] == "action=register"


async def test_invalid_push_target(running, http) -> None:
    async with http.post(running.url("/v2/bot/message/push"),
                         json={"to": "someone", "messages": [text("x")]},
                         headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 400
        assert "to" in (await r.json())["message"]


# --- rules, one class at a time ---------------------------------------------------------------


def test_message_count() -> None:
    assert props([]) == ["messages"]
    assert props([text("a")] * 6) == ["messages"]
    assert props([text("a")] * 5) == []
    assert props(None) == ["messages"]  # type: ignore[arg-type]


def test_text_length_counts_utf16_code_units() -> None:
    assert utf16_len("😀") == 2
    assert props([text("あ" * 5000)]) == []
    assert props([text("😀" * 2500)]) == []
    assert props([text("😀" * 2500 + "a")]) == ["messages[0].text"]
    assert props([text("")]) == ["messages[0].text"]
    assert props([{"type": "text"}]) == ["messages[0].text"]


def test_text_emojis_and_sender_tolerated() -> None:
    emoji = {"index": 0, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}
    assert props([text("$ hi", emojis=[emoji], sender={"name": "店長", "iconUrl": "https://x.test/i.png"})]) == []
    assert props([text("$", emojis=[{"index": 0}])]) == ["messages[0].emojis[0].productId", "messages[0].emojis[0].emojiId"]


def test_unknown_type() -> None:
    details = validate_messages([{"type": "hologram"}])
    assert details[0]["property"] == "messages[0].type"
    assert "Must be one of" in details[0]["message"]


def test_media_urls_must_be_https_except_loopback() -> None:
    def image(url: str) -> dict:
        return {"type": "image", "originalContentUrl": url, "previewImageUrl": url}

    assert props([image("https://cdn.example.com/a.jpg")]) == []
    assert props([image("http://cdn.example.com/a.jpg")]) == [
        "messages[0].originalContentUrl", "messages[0].previewImageUrl"
    ]
    for loopback in ("http://127.0.0.1:8080/a.png", "http://localhost/a.png", "http://[::1]/a.png"):
        assert props([image(loopback)]) == [], loopback
    assert not is_https_url("ftp://example.com/a")
    assert not is_https_url("javascript:alert(1)")
    assert props([{"type": "video", "originalContentUrl": "https://x.test/v.mp4"}]) == ["messages[0].previewImageUrl"]
    assert props([{"type": "audio", "originalContentUrl": "https://x.test/a.m4a"}]) == ["messages[0].duration"]


def test_location_and_sticker() -> None:
    assert props([{"type": "location", "title": "店", "address": "東京", "latitude": 35.0, "longitude": 139}]) == []
    assert props([{"type": "location", "title": "店", "address": "東京", "latitude": "35"}]) == [
        "messages[0].latitude", "messages[0].longitude"
    ]
    assert props([{"type": "sticker", "packageId": "446", "stickerId": "1988"}]) == []


def test_quick_reply_rules() -> None:
    def qr(*actions: dict, count: int | None = None) -> dict:
        items = [{"type": "action", "action": a} for a in actions]
        return text("選んでください", quickReply={"items": items})

    ok = {"type": "message", "label": "はい", "text": "はい"}
    assert props([qr(ok)]) == []
    assert props([qr(*[ok] * 13)]) == []
    assert props([qr(*[ok] * 14)]) == ["messages[0].quickReply.items"]
    assert props([text("x", quickReply={"items": []})]) == ["messages[0].quickReply.items"]
    assert props([qr({"type": "message", "label": "あ" * 21, "text": "x"})]) == [
        "messages[0].quickReply.items[0].action.label"
    ]
    assert props([qr({"type": "message", "text": "x"})]) == ["messages[0].quickReply.items[0].action.label"]
    for action in (
        {"type": "postback", "label": "登録", "data": "a=1", "displayText": "登録します"},
        {"type": "uri", "label": "サイト", "uri": "https://example.com"},
        {"type": "uri", "label": "電話", "uri": "tel:0312345678"},
        {"type": "datetimepicker", "label": "誕生日", "data": "bd", "mode": "date", "initial": "1990-01-31"},
        {"type": "camera", "label": "カメラ"},
        {"type": "cameraRoll", "label": "写真"},
        {"type": "location", "label": "位置"},
        {"type": "clipboard", "label": "コピー", "clipboardText": "CODE123"},
    ):
        assert props([qr(action)]) == [], action
    assert props([qr({"type": "richmenuswitch", "label": "x", "richMenuAliasId": "a", "data": "d"})]) == [
        "messages[0].quickReply.items[0].action.type"
    ]


def test_action_rules() -> None:
    def with_action(action: dict) -> list[str]:
        return props([text("x", quickReply={"items": [{"type": "action", "action": action}]})])

    at = "messages[0].quickReply.items[0].action"
    assert with_action({"type": "postback", "label": "x", "data": "d" * 300}) == []
    assert with_action({"type": "postback", "label": "x", "data": "d" * 301}) == [f"{at}.data"]
    assert with_action({"type": "datetimepicker", "label": "x", "data": "d", "mode": "week"}) == [f"{at}.mode"]
    assert with_action({"type": "datetimepicker", "label": "x", "data": "d", "mode": "time", "initial": "1990-01-01"}) == [f"{at}.initial"]
    assert with_action({"type": "datetimepicker", "label": "x", "data": "d", "mode": "datetime", "min": "2024-01-01T09:00"}) == []
    assert with_action({"type": "uri", "label": "x", "uri": "javascript:alert(1)"}) == [f"{at}.uri"]
    assert with_action({"type": "uri", "label": "x", "uri": "ftp://example.com"}) == [f"{at}.uri"]
    assert with_action({"type": "uri", "label": "x", "uri": "line://nv/location"}) == []
    assert with_action({"type": "message", "label": "x"}) == [f"{at}.text"]


def test_template_rules() -> None:
    def template(t: dict, alt: str = "テンプレート") -> dict:
        return {"type": "template", "altText": alt, "template": t}

    msg = {"type": "message", "label": "はい", "text": "はい"}
    assert props([template({"type": "buttons", "text": "選択", "actions": [msg]})]) == []
    assert props([template({"type": "buttons", "text": "選択", "actions": [msg]}, alt="a" * 401)]) == ["messages[0].altText"]
    assert props([template({"type": "buttons", "text": "a" * 161, "actions": [msg]})]) == ["messages[0].template.text"]
    assert props([template({"type": "buttons", "title": "t", "text": "a" * 61, "actions": [msg]})]) == ["messages[0].template.text"]
    assert props([template({"type": "buttons", "text": "x", "actions": [msg] * 5})]) == ["messages[0].template.actions"]
    assert props([template({"type": "confirm", "text": "よろしいですか?", "actions": [msg, msg]})]) == []
    assert props([template({"type": "confirm", "text": "?", "actions": [msg]})]) == ["messages[0].template.actions"]
    column = {"text": "商品", "actions": [msg]}
    assert props([template({"type": "carousel", "columns": [column] * 10})]) == []
    assert props([template({"type": "carousel", "columns": [column] * 11})]) == ["messages[0].template.columns"]
    uneven = [column, {"text": "別", "actions": [msg, msg]}]
    assert props([template({"type": "carousel", "columns": uneven})]) == ["messages[0].template.columns"]
    assert props([{"type": "template", "altText": "x"}]) == ["messages[0].template"]


def test_flex_rules() -> None:
    good = bubble_body(
        {"type": "text", "text": "見出し", "weight": "bold", "size": "xl"},
        {"type": "separator"},
        {"type": "box", "layout": "baseline", "contents": [
            {"type": "icon", "url": "https://x.test/star.png"},
            {"type": "text", "text": "4.5"},
            {"type": "filler"},
        ]},
        {"type": "image", "url": "https://x.test/a.jpg"},
        {"type": "text", "contents": [{"type": "span", "text": "赤", "color": "#ff0000"}]},
        {"type": "button", "action": {"type": "uri", "label": "開く", "uri": "https://x.test"}},
    )
    assert props([flex(good)]) == []
    assert props([flex({"type": "carousel", "contents": [good, good]})]) == []
    assert props([{"type": "flex", "contents": good}]) == ["messages[0].altText"]
    assert props([flex(good, alt="a" * 1501)]) == ["messages[0].altText"]
    assert props([flex({"type": "bubbles"})]) == ["messages[0].contents.type"]
    body = "messages[0].contents.body"
    assert props([flex(bubble_body({"type": "text"}))]) == [f"{body}.contents[0].text"]
    assert props([flex(bubble_body({"type": "button"}))]) == [f"{body}.contents[0].action"]
    assert props([flex(bubble_body({"type": "image"}))]) == [f"{body}.contents[0].url"]
    assert props([flex(bubble_body({"type": "box", "contents": []}))]) == [f"{body}.contents[0].layout"]
    assert props([flex(bubble_body({"type": "widget"}))]) == [f"{body}.contents[0].type"]
    # icons only inside baseline boxes; spans only inside text.
    assert props([flex(bubble_body({"type": "icon", "url": "https://x.test/i.png"}))]) == [f"{body}.contents[0].type"]
    nested = bubble_body({"type": "box", "layout": "horizontal", "contents": [
        {"type": "box", "layout": "vertical", "contents": [{"type": "text", "text": "ok"}, {"type": "button", "action": {"type": "postback", "label": "x", "data": "d" * 301}}]},
    ]})
    assert props([flex(nested)]) == [f"{body}.contents[0].contents[0].contents[1].action.data"]
    hero_video = {"type": "bubble", "hero": {"type": "video", "url": "https://x.test/v.mp4", "previewUrl": "https://x.test/p.jpg",
                                             "altContent": {"type": "image", "url": "https://x.test/p.jpg"}}}
    assert props([flex(hero_video)]) == []
    assert props([flex({"type": "carousel", "contents": [good] * 13})]) == ["messages[0].contents.contents"]


def test_imagemap_light_check() -> None:
    ok = {"type": "imagemap", "baseUrl": "https://x.test/im", "altText": "地図", "baseSize": {"width": 1040, "height": 1040},
          "actions": [{"type": "uri", "linkUri": "https://x.test", "area": {"x": 0, "y": 0, "width": 520, "height": 1040}}]}
    assert props([ok]) == []
    assert props([{**ok, "baseSize": {"width": 1000, "height": 1040}}]) == ["messages[0].baseSize.width"]


def test_rich_menu_rules() -> None:
    menu = {
        "size": {"width": 2500, "height": 1686}, "selected": True, "name": "メイン", "chatBarText": "メニュー",
        "areas": [{"bounds": {"x": 0, "y": 0, "width": 1250, "height": 1686}, "action": {"type": "postback", "data": "a"}}],
    }
    assert validate_rich_menu(menu) == []

    def bad(**change) -> list[str]:
        return [d["property"] for d in validate_rich_menu({**menu, **change})]

    assert bad(size={"width": 799, "height": 1686}) == ["size.width"]
    assert bad(size={"width": 2500, "height": 1687}) == ["size.height"]
    assert bad(chatBarText="あ" * 15) == ["chatBarText"]
    assert bad(name="n" * 301) == ["name"]
    assert bad(areas=menu["areas"] * 21) == ["areas"]
    assert bad(selected="yes") == ["selected"]
    outside = [{"bounds": {"x": 2000, "y": 0, "width": 1000, "height": 100}, "action": {"type": "postback", "data": "a"}}]
    assert bad(areas=outside) == ["areas[0].bounds"]
