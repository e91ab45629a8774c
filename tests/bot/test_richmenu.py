"""Rich menus: `kizuna richmenu setup` and the "rich_menu" effect, against the emulator over
real HTTP (nothing mocked)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import struct
import sys
from pathlib import Path

import pytest

from kizuna.bot import richmenu
from kizuna.bot.line import LineClient, RetryPolicy
from kizuna.emulator.images import png
from tests.conftest import ACCESS_TOKEN, CHANNEL_SECRET, SECRET_KEY, eventually

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def line(emulator):
    client = LineClient(
        access_token=ACCESS_TOKEN, api_base_url=emulator.base_url, data_api_base_url=emulator.base_url,
        timeout=2.0, retry=RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05),
    )
    yield client
    await client.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def counts(emulator) -> dict[str, int]:
    names = ("richmenu_create", "richmenu_delete", "richmenu_image_upload", "richmenu_alias_create",
             "richmenu_alias_update", "richmenu_default_set", "richmenu_link", "richmenu_unlink", "richmenu_alias_get")
    return {name: len(emulator.requests_to(name)) for name in names}


async def old_design(line: LineClient, spec: richmenu.MenuSpec) -> str:
    """A menu as an earlier Kizuna release would have left it: other hash, alias on it."""
    body = {**spec.definition(), "name": spec.name_prefix + "0123456789ab"}
    menu_id = await line.create_rich_menu(body)
    await line.upload_rich_menu_image(menu_id, png(250, 169), "image/png")
    if await line.get_rich_menu_alias(spec.alias) is None:
        await line.create_rich_menu_alias(spec.alias, menu_id)
    else:
        await line.update_rich_menu_alias(spec.alias, menu_id)
    return menu_id


# -- the bundled images -------------------------------------------------------------------


@pytest.mark.parametrize("spec", list(richmenu.MENUS.values()), ids=list(richmenu.MENUS))
def test_bundled_images_fit_line_and_the_areas_cover_them(spec):
    image = spec.image()
    assert len(image) <= 1024 * 1024
    assert png_size(image) == (richmenu.WIDTH, richmenu.HEIGHT) == (2500, 1686)
    body = spec.body()
    assert len(body["name"]) <= 300 and len(body["chatBarText"]) <= 14
    assert sum(a["bounds"]["width"] * a["bounds"]["height"] for a in body["areas"]) == 2500 * 1686
    for area in body["areas"]:
        action = area["action"]
        assert action["type"] == "postback" and action["data"].startswith("action=")
        assert action["displayText"] and len(action["label"]) <= 20


def test_the_menus_offer_what_the_issue_asks():
    def actions(spec):
        return [(a["action"]["displayText"], a["action"]["data"]) for a in spec.body()["areas"]]

    assert actions(richmenu.DEFAULT) == [
        ("会員登録", "action=register"), ("クーポン", "action=coupons"),
        ("お問い合わせ", "action=inquiry"), ("会員情報", "action=member_info"),
    ]
    # Members: no 会員登録; クーポン and お問い合わせ stay where they were.
    assert actions(richmenu.REGISTERED) == [
        ("会員情報", "action=member_info"), ("クーポン", "action=coupons"),
        ("お問い合わせ", "action=inquiry"), ("登録内容の変更", "action=profile_edit"),
    ]


# -- setup ----------------------------------------------------------------------------------


async def test_setup_creates_both_menus_with_images_sets_the_default_and_the_aliases(line, emulator):
    report = await richmenu.setup(line)

    default, registered = report.menu("default"), report.menu("registered")
    assert (default.menu, registered.menu) == ("created", "created")
    assert (default.alias_change, registered.alias_change) == ("created", "created")
    assert report.default_change == "set" and report.deleted == []
    assert set(emulator.rich_menus) == {default.rich_menu_id, registered.rich_menu_id}
    assert emulator.default_rich_menu_id == default.rich_menu_id
    assert emulator.rich_menu_aliases == {"kizuna-default": default.rich_menu_id, "kizuna-registered": registered.rich_menu_id}
    for result, spec in ((default, richmenu.DEFAULT), (registered, richmenu.REGISTERED)):
        stored = emulator.rich_menus[result.rich_menu_id]
        assert stored.image == spec.image() and stored.image_type == "image/png"
        assert stored.body["name"] == result.name == spec.name()
        assert stored.body["areas"] == spec.body()["areas"]
    # The uploads went to the data host's path with the image's content type.
    assert all(r.headers.get("Content-Type") == "image/png" for r in emulator.requests_to("richmenu_image_upload"))

    lines = report.lines()
    assert f"default menu: created {default.rich_menu_id} ({default.name})" in lines
    assert f"default rich menu: {default.rich_menu_id} (set)" in lines


async def test_running_setup_again_creates_and_deletes_nothing(line, emulator):
    first = await richmenu.setup(line)
    before = counts(emulator)
    again = await richmenu.setup(line)
    third = await richmenu.setup(line)

    after = counts(emulator)
    for name in ("richmenu_create", "richmenu_delete", "richmenu_image_upload", "richmenu_alias_create",
                 "richmenu_alias_update", "richmenu_default_set"):
        assert after[name] == before[name], name
    assert len(emulator.rich_menus) == 2
    for report in (again, third):
        assert [(m.menu, m.alias_change) for m in report.menus] == [("unchanged", "unchanged")] * 2
        assert report.default_change == "unchanged" and report.deleted == []
        assert {m.rich_menu_id for m in report.menus} == {m.rich_menu_id for m in first.menus}
    assert "(already set)" in again.lines()[-1]


async def test_a_new_design_replaces_the_default_menu_and_keeps_the_members_menu(line, emulator):
    old_default = await old_design(line, richmenu.DEFAULT)
    await line.set_default_rich_menu(old_default)
    old_member = await old_design(line, richmenu.REGISTERED)
    member = emulator.add_user("会員", followed=True)
    await line.link_rich_menu(member.user_id, old_member)

    report = await richmenu.setup(line)

    new_default, new_member = report.menu("default").rich_menu_id, report.menu("registered").rich_menu_id
    assert [(m.menu, m.alias_change) for m in report.menus] == [("created", "updated")] * 2
    assert emulator.default_rich_menu_id == new_default
    assert emulator.rich_menu_aliases == {"kizuna-default": new_default, "kizuna-registered": new_member}
    # The old default is shown to nobody now: deleted. Members are linked to the old member
    # menu: it stays, so they keep a member menu.
    assert old_default not in emulator.rich_menus and report.deleted == [(old_default, "kizuna-default#0123456789ab")]
    assert old_member in emulator.rich_menus and report.kept == [(old_member, "kizuna-registered#0123456789ab")]
    assert emulator.rich_menu_for(member.user_id).rich_menu_id == old_member
    assert any("--prune" in text for text in report.lines())

    pruned = await richmenu.setup(line, prune=True)
    assert pruned.deleted == [(old_member, "kizuna-registered#0123456789ab")] and pruned.kept == []
    assert set(emulator.rich_menus) == {new_default, new_member}
    assert emulator.rich_menu_for(member.user_id).rich_menu_id == new_default  # the default shows


async def test_a_run_that_stopped_half_way_is_finished_without_another_menu(line, emulator):
    # An earlier run created the member menu and stopped before uploading its image.
    half_made = await line.create_rich_menu(richmenu.REGISTERED.body())
    creates = len(emulator.requests_to("richmenu_create"))

    report = await richmenu.setup(line)

    assert report.menu("registered").menu == "reused" and report.menu("registered").rich_menu_id == half_made
    assert emulator.rich_menus[half_made].image == richmenu.REGISTERED.image()
    assert emulator.rich_menu_aliases["kizuna-registered"] == half_made
    assert len(emulator.requests_to("richmenu_create")) == creates + 1  # only the default menu
    assert len(emulator.rich_menus) == 2


async def test_lost_answers_on_create_and_upload_leave_no_twin(line, emulator):
    # The first create and the first upload are executed, but the answers are lost (500):
    # the client retries both.
    emulator.fail_next("richmenu_create", 500, after_executing=True)
    emulator.fail_next("richmenu_image_upload", 500, after_executing=True)

    report = await richmenu.setup(line)

    assert len(emulator.requests_to("richmenu_create")) == 3  # a twin of the default menu was made...
    assert len(report.deleted) == 1 and report.deleted[0][1] == richmenu.DEFAULT.name()  # ...and deleted
    assert set(emulator.rich_menus) == {m.rich_menu_id for m in report.menus}
    assert all(menu.image is not None for menu in emulator.rich_menus.values())
    again = await richmenu.setup(line)
    assert [m.menu for m in again.menus] == ["unchanged", "unchanged"] and again.deleted == []


# -- the effect -------------------------------------------------------------------------------


async def test_effect_links_the_member_menu_and_default_unlinks(line, emulator):
    report = await richmenu.setup(line)
    member_menu, default_menu = report.menu("registered").rich_menu_id, report.menu("default").rich_menu_id
    first, second = emulator.add_user("一人目", followed=True), emulator.add_user("二人目", followed=True)
    alias_gets = len(emulator.requests_to("richmenu_alias_get"))

    await richmenu.switch_user_menu(line, first.user_id, "registered")
    await richmenu.switch_user_menu(line, second.user_id, "registered")

    assert first.rich_menu_id == second.rich_menu_id == member_menu
    assert emulator.rich_menu_for(first.user_id).rich_menu_id == member_menu
    assert len(emulator.requests_to("richmenu_alias_get")) == alias_gets + 1  # the lookup is cached

    await richmenu.switch_user_menu(line, first.user_id, "default")
    assert first.rich_menu_id is None
    assert emulator.rich_menu_for(first.user_id).rich_menu_id == default_menu
    assert second.rich_menu_id == member_menu
    assert len(emulator.requests_to("richmenu_alias_get")) == alias_gets + 1


async def test_effect_without_rich_menus_does_nothing_and_says_so(line, emulator, caplog):
    user = emulator.add_user("メニューなし", followed=True)

    with caplog.at_level(logging.INFO, logger="kizuna.richmenu"):
        await richmenu.switch_user_menu(line, user.user_id, "registered")
        await richmenu.switch_user_menu(line, user.user_id, "default")

    assert user.rich_menu_id is None
    assert counts(emulator)["richmenu_link"] == counts(emulator)["richmenu_unlink"] == 0
    notes = [r for r in caplog.records if r.name == "kizuna.richmenu" and "no rich menu is set up" in r.getMessage()]
    assert len(notes) == 2 and all(r.levelno == logging.INFO for r in notes)


async def test_effect_follows_a_replaced_member_menu_even_with_a_cached_alias(line, emulator):
    await richmenu.setup(line)
    first = emulator.add_user("一人目", followed=True)
    await richmenu.switch_user_menu(line, first.user_id, "registered")  # caches the alias
    cached = first.rich_menu_id

    # Elsewhere (another process), the member menu is replaced and the old one deleted.
    replacement = await old_design(line, richmenu.REGISTERED)
    await line.delete_rich_menu(cached)

    second = emulator.add_user("二人目", followed=True)
    await richmenu.switch_user_menu(line, second.user_id, "registered")
    assert second.rich_menu_id == replacement


async def test_registering_through_the_chat_links_the_member_menu(kizuna):
    line = LineClient(access_token=ACCESS_TOKEN, api_base_url=kizuna.emulator.base_url, data_api_base_url=kizuna.emulator.base_url)
    try:
        report = await richmenu.setup(line)
    finally:
        await line.close()
    member_menu = report.menu("registered").rich_menu_id
    emulator = kizuna.emulator
    user = emulator.add_user(display_name="山田 花子", language="ja")

    async def send(event, expect_at_least: int = 1) -> None:
        before = len(emulator.messages_to(user.user_id))
        assert (await event).status == 200
        await emulator.wait_for_messages(user.user_id, before + expect_at_least)

    await send(emulator.follow(user.user_id))
    await send(emulator.send_postback(user.user_id, data="action=register", display_text="会員登録"))
    for answer in ("同意する", "山田 花子", "1990/01/31", "女性", "東京都", "090-1234-5678", "hanako@example.com", "はい"):
        await send(emulator.send_text(user.user_id, answer))
    assert user.rich_menu_id is None
    await send(emulator.send_text(user.user_id, "登録する"))

    async def linked() -> bool:
        return user.rich_menu_id == member_menu

    await eventually(linked, what="the member menu linked after registering")


# -- the command --------------------------------------------------------------------------------


async def test_cli_sets_up_the_menus_against_a_running_emulator(emulator, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KIZUNA_", "LINE_", "DATABASE_", "REDIS_"))},
        "KIZUNA_SECRET_KEY": SECRET_KEY,
        "LINE_CHANNEL_SECRET": CHANNEL_SECRET,
        "LINE_CHANNEL_ACCESS_TOKEN": ACCESS_TOKEN,
        "LINE_API_BASE_URL": emulator.base_url,
        "LINE_DATA_API_BASE_URL": emulator.base_url,
        "KIZUNA_EMULATOR": "false",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kizuna.db'}",
        "PYTHONPATH": str(REPO),
    }

    async def run(*command: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kizuna.bot.cli", *(command or ("richmenu", "setup")),
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode, out.decode(), err.decode()

    assert (await run("migrate"))[0] == 0
    member = emulator.add_user("会員", followed=True)  # registered before the menus existed
    await _register(env["DATABASE_URL"], member.user_id)

    code, out, err = await run()
    assert code == 0, err
    assert "member menu linked to 1 of 1 registered customers" in out
    ids = dict(re.findall(r"^(default|registered) menu: created (richmenu-[0-9a-f]+) ", out, re.M))
    assert set(ids) == {"default", "registered"}, out
    assert set(ids.values()) == set(emulator.rich_menus)
    assert emulator.default_rich_menu_id == ids["default"]
    assert f"alias kizuna-registered -> {ids['registered']}: created" in out
    assert f"default rich menu: {ids['default']} (set)" in out

    code, out, err = await run()
    assert code == 0, err
    assert f"default menu: unchanged {ids['default']}" in out and f"registered menu: unchanged {ids['registered']}" in out
    assert "(already set)" in out
    assert len(emulator.rich_menus) == 2 and len(emulator.requests_to("richmenu_create")) == 2
    assert member.rich_menu_id == ids["registered"]


# -- members who registered before the menus, or under an older design ----------------------------


async def _register(database_url: str, line_user_id: str, *, blocked: bool = False) -> None:
    """A member as registration leaves one (the flow itself is tested in tests/flows)."""
    from kizuna.storage import customers
    from kizuna.storage.db import create_engine, session_factory, transaction
    from kizuna.storage.types import utcnow

    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            customer, _ = await customers.get_or_create(session, line_user_id, None)
            customers.complete_registration(customer, profile={"full_name": "会員 花子"}, marketing_opt_in=False,
                                            consented_at=utcnow(), at=utcnow())
            customer.blocked = blocked
    finally:
        await engine.dispose()


async def test_setup_links_the_member_menu_to_every_member(line, emulator, settings):
    """The defect: customers who registered before `kizuna richmenu setup` kept the menu for
    non-members. Setup links the member menu to each of them, paced by the client."""
    from kizuna.storage.db import create_engine, session_factory

    members = [emulator.add_user(f"会員{i}", followed=True) for i in range(7)]
    for user in members:
        await _register(settings.database_url, user.user_id)
    visitor = emulator.add_user("未登録", followed=True)
    from kizuna.storage import customers
    from kizuna.storage.db import transaction

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await customers.get_or_create(session, visitor.user_id, None)
    blocked = emulator.add_user("ブロック", followed=False)
    await _register(settings.database_url, blocked.user_id, blocked=True)
    gone = "U" + "0" * 32  # a member LINE no longer knows
    await _register(settings.database_url, gone)
    try:
        report = await richmenu.setup(line, sessions=sessions)
        member_menu = report.menu("registered").rich_menu_id
        assert all(user.rich_menu_id == member_menu for user in members)
        assert visitor.rich_menu_id is None and blocked.rich_menu_id is None
        assert emulator.rich_menu_for(visitor.user_id).rich_menu_id == report.menu("default").rich_menu_id
        relinked = report.relinked
        assert (relinked.members, relinked.linked, relinked.failed) == (8, 7, 1)
        assert relinked.failures[0][0] == gone and relinked.stopped is None
        assert "member menu linked to 7 of 8 registered customers (1 refused by LINE)" in report.lines()
        assert len(emulator.requests_to("richmenu_link")) == 8  # one each, blocked customers skipped

        # A new design: members move to the new member menu with the same run.
        old = await old_design(line, richmenu.REGISTERED)
        for user in members:
            await line.link_rich_menu(user.user_id, old)
        again = await richmenu.setup(line, sessions=sessions)
        assert again.menu("registered").rich_menu_id == member_menu  # the alias went back to the current design
        assert all(user.rich_menu_id == member_menu for user in members)
    finally:
        await engine.dispose()


async def test_the_server_sets_the_menus_up_itself_in_emulator_mode(database_url, redis_prefix, redis_cleanup):
    """`make run`: the emulator lives inside `kizuna serve`, so the server sets the menus up
    once it answers, and a newcomer's chat shows them without any command."""
    import socket

    from aiohttp.test_utils import TestServer

    from kizuna.bot.app import create_app
    from tests.conftest import make_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/emulator"
    settings = make_settings(database_url, base, redis_prefix=redis_prefix, emulator=True, host="127.0.0.1", port=port)
    server = TestServer(create_app(settings, run_worker=False), host="127.0.0.1", port=port)
    await server.start_server()
    client = LineClient(access_token=ACCESS_TOKEN, api_base_url=base, data_api_base_url=base, timeout=2.0)
    try:
        async def default_menu_set() -> bool:
            return await client.get_default_rich_menu_id() is not None

        await eventually(default_menu_set, timeout=30, what="the rich menus set up by the server")
        default = await client.get_default_rich_menu_id()
        assert await client.get_rich_menu_alias("kizuna-default") == default
        assert await client.get_rich_menu_alias("kizuna-registered") is not None
    finally:
        await client.close()
        await server.close()
