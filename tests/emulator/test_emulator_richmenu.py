"""Rich menus through the SDK's AsyncMessagingApi and AsyncMessagingApiBlob."""

from __future__ import annotations

import io
import json

import pytest
from linebot.v3.messaging import (
    ApiException,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    CreateRichMenuAliasRequest,
    PostbackAction,
    RichMenuArea,
    RichMenuBounds,
    RichMenuBulkLinkRequest,
    RichMenuRequest,
    RichMenuSize,
)

from kizuna.emulator import Emulator
from kizuna.emulator.images import png


def menu_request(name: str = "メイン") -> RichMenuRequest:
    return RichMenuRequest(
        size=RichMenuSize(width=2500, height=843),
        selected=True,
        name=name,
        chat_bar_text="メニュー",
        areas=[
            RichMenuArea(bounds=RichMenuBounds(x=0, y=0, width=1250, height=843),
                         action=PostbackAction(data="action=register", display_text="会員登録")),
            RichMenuArea(bounds=RichMenuBounds(x=1250, y=0, width=1250, height=843),
                         action=PostbackAction(data="action=coupon")),
        ],
    )


async def upload(blob: AsyncMessagingApiBlob, menu_id: str) -> None:
    await blob.set_rich_menu_image(menu_id, body=png(250, 84), _headers={"Content-Type": "image/png"})


async def test_create_upload_link_and_default(line: AsyncMessagingApi, blob: AsyncMessagingApiBlob, emu: Emulator) -> None:
    user = emu.add_user("メニュー", followed=True)
    await line.validate_rich_menu_object(menu_request())
    menu_id = (await line.create_rich_menu(menu_request())).rich_menu_id
    assert menu_id.startswith("richmenu-")
    got = await line.get_rich_menu(menu_id)
    assert got.chat_bar_text == "メニュー" and len(got.areas) == 2
    assert [m.rich_menu_id for m in (await line.get_rich_menu_list()).richmenus] == [menu_id]

    # No image yet: LINE refuses to link it, and there is no content to download.
    with pytest.raises(ApiException) as info:
        await line.link_rich_menu_id_to_user(user.user_id, menu_id)
    assert info.value.status == 400
    with pytest.raises(ApiException) as info:
        await blob.get_rich_menu_image(menu_id)
    assert info.value.status == 404

    await upload(blob, menu_id)
    assert bytes(await blob.get_rich_menu_image(menu_id)).startswith(b"\x89PNG")
    with pytest.raises(ApiException) as info:
        await upload(blob, menu_id)  # an image is uploaded once
    assert info.value.status == 400

    await line.set_default_rich_menu(menu_id)
    assert (await line.get_default_rich_menu_id()).rich_menu_id == menu_id
    assert emu.rich_menu_for(user.user_id).rich_menu_id == menu_id

    other = (await line.create_rich_menu(menu_request("個別"))).rich_menu_id
    await upload(blob, other)
    await line.link_rich_menu_id_to_user(user.user_id, other)
    assert (await line.get_rich_menu_id_of_user(user.user_id)).rich_menu_id == other
    await line.unlink_rich_menu_id_from_user(user.user_id)
    with pytest.raises(ApiException) as info:
        await line.get_rich_menu_id_of_user(user.user_id)
    assert info.value.status == 404

    await line.link_rich_menu_id_to_users(RichMenuBulkLinkRequest(rich_menu_id=other, user_ids=[user.user_id]))
    assert user.rich_menu_id == other

    await line.cancel_default_rich_menu()
    with pytest.raises(ApiException):
        await line.get_default_rich_menu_id()

    await line.delete_rich_menu(other)
    assert user.rich_menu_id is None
    with pytest.raises(ApiException) as info:
        await line.get_rich_menu(other)
    assert info.value.status == 404


async def test_aliases(line: AsyncMessagingApi, blob: AsyncMessagingApiBlob) -> None:
    menu_id = (await line.create_rich_menu(menu_request())).rich_menu_id
    await upload(blob, menu_id)
    await line.create_rich_menu_alias(CreateRichMenuAliasRequest(rich_menu_alias_id="main", rich_menu_id=menu_id))
    alias = await line.get_rich_menu_alias("main")
    assert alias.rich_menu_id == menu_id
    assert [a.rich_menu_alias_id for a in (await line.get_rich_menu_alias_list()).aliases] == ["main"]
    with pytest.raises(ApiException) as info:
        await line.create_rich_menu_alias(CreateRichMenuAliasRequest(rich_menu_alias_id="main", rich_menu_id=menu_id))
    assert info.value.status == 400
    await line.delete_rich_menu_alias("main")
    with pytest.raises(ApiException) as info:
        await line.get_rich_menu_alias("main")
    assert info.value.status == 404


async def test_invalid_menu_and_image(running, http, blob: AsyncMessagingApiBlob, line: AsyncMessagingApi) -> None:
    headers = {"Authorization": "Bearer test-access-token"}
    bad = menu_request().to_dict()
    bad["size"] = {"width": 100, "height": 100}
    bad["chatBarText"] = "とても長いチャットバーのテキスト"
    async with http.post(running.url("/v2/bot/richmenu"), json=bad, headers=headers) as r:
        assert r.status == 400
        details = (await r.json())["details"]
    assert {d["property"] for d in details} >= {"size.width", "size.height", "chatBarText"}
    menu_id = (await line.create_rich_menu(menu_request())).rich_menu_id
    async with http.post(running.url(f"/v2/bot/richmenu/{menu_id}/content"), data=b"GIF89a",
                         headers={**headers, "Content-Type": "image/gif"}) as r:
        assert r.status == 415
    async with http.post(running.url(f"/v2/bot/richmenu/{menu_id}/content"), data=io.BytesIO(b"\xff" * (1024 * 1024 + 1)),
                         headers={**headers, "Content-Type": "image/jpeg"}) as r:
        assert r.status == 413


async def test_create_and_delete_are_limited_per_hour(line: AsyncMessagingApi, emu: Emulator, clock) -> None:
    for _ in range(100):
        await line.create_rich_menu(menu_request())
    with pytest.raises(ApiException) as info:
        await line.create_rich_menu(menu_request())
    assert info.value.status == 429
    assert json.loads(info.value.body)["message"] == "The API rate limit has been exceeded. Try again later."
    clock.advance(36)  # 100 per hour: one more token after 36 s
    await line.create_rich_menu(menu_request())
