"""応答メッセージ (with the privacy policy URL), 営業時間 and リッチメニュー over real HTTP: the
pages render, changes reach the bot and the audit log, and what the services refuse is
shown beside the field with nothing changed."""

from __future__ import annotations

from kizuna.flows.faq import settings as inquiry_settings
from kizuna.storage import texts
from kizuna.storage.models import BotText
from kizuna.storage.types import utcnow
from tests.console.helpers import Console
from tests.flows.test_inquiry import Chat

PRIVACY = "/console/texts/privacy_policy_url"


async def text_of(console: Console, key: str, locale: str) -> str:
    async with console.sessions() as session:
        return await texts.get_text(session, key, locale)


async def edits(console: Console) -> list[tuple[str, str, str]]:
    async with console.sessions() as session:
        rows = (await session.execute(BotText.__table__.select().order_by("key", "locale"))).all()
    return [(row.key, row.locale, row.text) for row in rows]


# -- 応答メッセージ ---------------------------------------------------------------------------


async def test_the_privacy_policy_url_is_set_once_and_registration_sends_it(console):
    browser = await console.admin()
    response, page = await browser.get("/console/texts")
    assert response.status == 200 and "仮の値（example.com）のまま" in page and "greeting" in page
    response, page = await browser.get("/console/texts?group=registration")
    assert "registration_consent" in page and "greeting_again" not in page
    response, page = await browser.get("/console/texts?q=%E5%86%8D%E3%81%B3")  # 再び
    assert "greeting_again" in page and "registration_consent" not in page

    for bad in ("javascript:alert(1)", "example.jp/privacy", "https://", "https://example.jp/a b", "  "):
        response, page = await browser.post(f"{PRIVACY}/ja?from=list", {"text": bad})
        assert response.status == 400 and 'id="error-ja"' in page and "https:// で始まるURL" in page, bad
    assert await edits(console) == []

    response, _ = await browser.post(f"{PRIVACY}/ja?from=list", {"text": " https://shop.example.jp/privacy "})
    assert response.status == 303 and response.headers["Location"] == "/console/texts?notice=text_saved"
    assert await text_of(console, "privacy_policy_url", "ja") == "https://shop.example.jp/privacy"
    assert await text_of(console, "privacy_policy_url", "en") == "https://shop.example.jp/privacy"  # follows Japanese
    response, page = await browser.get("/console/texts")
    assert "仮の値" not in page

    [consent] = await Chat(console.kizuna.emulator).say("会員登録")
    assert "https://shop.example.jp/privacy" in consent["text"]
    [entry] = await console.audit("text.changed")
    assert (entry.target, entry.details) == ("text:privacy_policy_url/ja", {"old": "https://example.com/privacy",
                                                                            "new": "https://shop.example.jp/privacy"})


async def test_a_text_is_edited_and_reset_per_language(console):
    browser = await console.admin()
    response, page = await browser.get("/console/texts/registration_consent")
    assert response.status == 200 and "{url}" in page and "初期値" in page
    assert (await browser.get("/console/texts/no_such_text"))[0].status == 404

    for bad, message in (("会員登録 {url} {name}さま", "{name} is not filled in by the bot"),
                         ("会員登録 {url", "without its pair"), ("", "not blank"), ("あ" * 5001, "5000 characters")):
        response, page = await browser.post("/console/texts/registration_consent/en", {"text": bad})
        assert response.status == 400 and 'id="error-en"' in page and message in page, bad
    assert await edits(console) == []

    edited = "Welcome! Our privacy policy: {url}"
    assert (await browser.post("/console/texts/registration_consent/en", {"text": edited}))[0].status == 303
    assert await text_of(console, "registration_consent", "en") == edited
    assert await text_of(console, "registration_consent", "ja") == texts.DEFAULTS["registration_consent"]["ja"]
    response, page = await browser.get("/console/texts/registration_consent?notice=text_saved")
    assert "変更済み" in page and "初期値を見る" in page
    assert (await browser.post("/console/texts/registration_consent/en/reset"))[0].status == 303
    assert await edits(console) == []
    assert [row.action for row in await console.audit() if row.action.startswith("text.")] == ["text.changed", "text.reset"]


# -- 営業時間 ---------------------------------------------------------------------------------


def week(**days: tuple[str, str]) -> dict[str, str]:
    form = {"configured": "yes", "holidays": ""}
    for day, (opens, closes) in days.items():
        form[f"{day}-0-open"], form[f"{day}-0-close"] = opens, closes
    return form


async def hours_now(console: Console):
    async with console.sessions() as session:
        return await inquiry_settings.business_hours(session, utcnow())


async def test_business_hours_are_set_and_refused_beside_the_field(console):
    marketer = await console.logged_in(await console.add_staff("marketer@example.com", "marketer"))
    response, page = await marketer.get("/console/hours")
    assert response.status == 200 and "営業時間は未設定です" in page and "月曜日" in page

    for form, field in (
        (week(mon=("10:00", "25:00")), "weekly"),
        (week(mon=("20:00", "10:00")), "weekly"),
        (week(mon=("10:00", "")), "weekly"),
        ({**week(mon=("10:00", "14:00")), "mon-1-open": "13:00", "mon-1-close": "18:00"}, "weekly"),
        ({**week(mon=("10:00", "20:00")), "holidays": "12月31日"}, "holidays"),
        ({**week(mon=("10:00", "20:00")), "holidays": "2026-02-30"}, "holidays"),
    ):
        response, page = await marketer.post("/console/hours", form)
        assert response.status == 400 and f'id="error-{field}"' in page, form
    assert not (await hours_now(console)).configured
    assert await console.audit("business_hours.changed") == []

    form = {**week(mon=("9:00", "18:00"), sat=("１０：００", "17:00")), "mon-1-open": "19:00", "mon-1-close": "24:00",
            "holidays": "2026/12/31\n2027-1-1\n2026-12-31"}
    response, _ = await marketer.post("/console/hours", form)
    assert response.status == 303
    hours = await hours_now(console)
    assert hours.weekly["mon"] == [["09:00", "18:00"], ["19:00", "24:00"]] and hours.weekly["sat"] == [["10:00", "17:00"]]
    assert hours.weekly["sun"] == [] and hours.holidays == ["2026-12-31", "2027-01-01"]
    response, page = await marketer.get("/console/hours?notice=hours_saved")
    assert 'value="19:00"' in page and "2027-01-01" in page
    [entry] = await console.audit("business_hours.changed")
    assert entry.details["weekly"].startswith("mon 09:00-18:00 19:00-24:00, tue closed") and entry.details["holidays"] == 2

    assert (await marketer.post("/console/hours", {**form, "configured": "no"}))[0].status == 303
    assert not (await hours_now(console)).configured


# -- リッチメニュー -------------------------------------------------------------------------


async def test_the_rich_menus_are_set_up_from_the_console(console):
    browser = await console.admin()
    emulator = console.kizuna.emulator
    response, page = await browser.get("/console/richmenu")
    assert response.status == 200 and "リッチメニューはまだ設定されていません" in page and 'data-set-up="no"' in page
    async with browser.client.get(browser.base_url + "/console/richmenu/default.png") as image:
        assert image.status == 200 and image.content_type == "image/png" and (await image.read()).startswith(b"\x89PNG")

    emulator.fail_next("richmenu_create", status=400, body={"message": "invalid rich menu"})
    response, page = await browser.post("/console/richmenu/setup")
    assert response.status == 502 and "LINEにつながらないか" in page and "invalid rich menu" in page
    assert emulator.default_rich_menu_id is None and await console.audit("rich_menu.setup") == []

    response, _ = await browser.post("/console/richmenu/setup")
    assert response.status == 303 and response.headers["Location"] == "/console/richmenu?notice=rich_menu_set_up"
    response, page = await browser.get(response.headers["Location"])
    assert 'data-set-up="yes"' in page and "リッチメニューは設定済みです" in page
    assert emulator.default_rich_menu_id is not None
    [entry] = await console.audit("rich_menu.setup")
    assert entry.actor == "admin@example.com" and "default" in entry.details["menus"]
