"""よくある質問 and キーワード応答 over real HTTP: every page renders, every action works and is
written to the audit log, and what the service refuses comes back beside its field with
nothing changed. Customers' unanswered questions are shown as text, never as markup."""

from __future__ import annotations

import html

import aiohttp
import sqlalchemy as sa

from kizuna.storage import faq as faq_store
from kizuna.storage.models import FaqEntry, KeywordRule
from tests.console.helpers import Console
from tests.flows.test_inquiry import ANSWERS, Chat, import_faq

SCRIPT = "<script>alert('faq')</script>手提げ袋をもらえますか"
UNANSWERED = "紙袋つけてください"


async def entries(console: Console) -> dict[str, FaqEntry]:
    async with console.sessions() as session:
        return {entry.id: entry for entry in await faq_store.list_entries(session)}


async def test_the_faq_pages_render_and_search(console):
    assert (await import_faq(console.kizuna))[0] == 200
    browser = await console.admin()
    response, page = await browser.get("/console/faq")
    assert response.status == 200 and "送料はいくらですか" in page and "CSVインポート" in page
    response, page = await browser.get("/console/faq?q=ＰＡＹＰＡＹ")  # full width, any case
    assert response.status == 200
    assert "支払い方法" in page and "送料はいくらですか" not in page
    response, page = await browser.get("/console/faq/entries/shipping_fee")
    assert response.status == 200 and html.escape(ANSWERS["shipping_fee"], quote=False) in page
    assert (await browser.get("/console/faq/entries/no-such-entry"))[0].status == 404
    response, page = await browser.get("/console/faq/new?question=%E9%80%81%E6%96%99")
    assert response.status == 200 and 'value="送料"' in page and 'value="faq-' in page  # a free id is offered


async def test_create_edit_and_disable_an_entry(console):
    browser = await console.admin()
    form = {"id": "gift-wrap", "question": "ギフト包装はできますか", "answer": "1点220円で承ります。",
            "alternates": "ラッピングできますか\n\nラッピングできますか", "category": "order"}
    response, _ = await browser.post("/console/faq", form)
    assert response.status == 303 and response.headers["Location"] == "/console/faq/entries/gift-wrap?notice=faq_created"
    entry = (await entries(console))["gift-wrap"]
    assert entry.alternates == ["ラッピングできますか"] and entry.category == "order"

    response, _ = await browser.post("/console/faq/entries/gift-wrap", {**form, "answer": "無料です。", "category": ""})
    assert response.status == 303
    entry = (await entries(console))["gift-wrap"]
    assert entry.answer == "無料です。" and entry.category is None
    response, _ = await browser.post("/console/faq/entries/gift-wrap/enabled", {"enabled": "false"})
    assert response.status == 303 and not (await entries(console))["gift-wrap"].enabled

    log = [(row.action, row.target, row.actor, row.details) for row in await console.audit() if row.action.startswith("faq.")]
    assert log == [
        ("faq.created", "faq:gift-wrap", "admin@example.com", {"question": "ギフト包装はできますか"}),
        ("faq.updated", "faq:gift-wrap", "admin@example.com", {"changed": "answer, category"}),
        ("faq.updated", "faq:gift-wrap", "admin@example.com", {"changed": "enabled"}),
    ]
    assert all(row.ip for row in await console.audit("faq.updated"))


async def test_what_the_service_refuses_is_shown_beside_the_field_and_nothing_changes(console):
    browser = await console.admin()
    good = {"id": "gift-wrap", "question": "ギフト包装はできますか", "answer": "1点220円で承ります。", "alternates": "", "category": ""}
    assert (await browser.post("/console/faq", good))[0].status == 303
    before = await entries(console)
    audited = len(await console.audit())
    for change, field, sentence in (
        ({"id": "bad id"}, "id", "IDは半角英数字"),
        ({"id": "export"}, "id", "IDは半角英数字"),
        ({"id": "gift-wrap"}, None, "このIDはすでに使われています"),
        ({"id": "new-one", "question": "   "}, "question", "質問を入力してください"),
        ({"id": "new-one", "alternates": "a|b"}, "alternates", "言い換えを確認してください"),
    ):
        response, page = await browser.post("/console/faq", {**good, **change})
        assert response.status == 400, change
        assert sentence in page, change
        if field is not None:
            assert f'id="error-{field}"' in page and 'aria-invalid="true"' in page, change
        assert 'value="{}"'.format(html.escape(change.get("id", good["id"]))) in page  # what was typed stays
    response, page = await browser.post("/console/faq/entries/gift-wrap", {**good, "answer": ""})
    assert response.status == 400 and 'id="error-answer"' in page and "is missing" in page
    assert await entries(console) == before
    assert len(await console.audit()) == audited


async def test_an_unanswered_question_becomes_a_phrasing_and_the_bot_then_answers_it(console):
    kizuna = console.kizuna
    assert (await import_faq(kizuna))[0] == 200
    first, second = Chat(kizuna.emulator, "山田"), Chat(kizuna.emulator, "<b>佐藤</b>")
    for chat in (first, second):
        [reply] = await chat.say(UNANSWERED)
        assert reply["text"].startswith("申し訳ございません")
    await second.say(SCRIPT)

    browser = await console.admin()
    response, page = await browser.get("/console/faq")
    assert response.status == 200
    assert html.escape(UNANSWERED) in page and "2回" in page and "2人" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;faq&#39;)&lt;/script&gt;" in page  # text, not markup
    assert page.index(html.escape(UNANSWERED)) < page.index("&lt;script&gt;")  # most asked first
    assert 'href="/console/faq/new?question=' in page

    # refused: an entry that is not there, a phrasing with the CSV's separator (nothing changes)
    before = await entries(console)
    response, page = await browser.post("/console/faq/alternates", {"faq_id": "nope", "text": UNANSWERED})
    assert response.status == 400 and "対象が見つかりません" in page
    response, page = await browser.post("/console/faq/alternates", {"faq_id": "gift", "text": "a|b"})
    assert response.status == 400 and "言い換えを確認してください" in page and "the CSV separator" in page
    assert await entries(console) == before

    response, _ = await browser.post("/console/faq/alternates", {"faq_id": "gift", "text": UNANSWERED})
    assert response.status == 303 and response.headers["Location"] == "/console/faq?notice=faq_alternate_added"
    assert (await entries(console))["gift"].alternates[-1] == UNANSWERED
    response, page = await browser.get("/console/faq?notice=faq_alternate_added")
    assert "言い換えを追加しました" in page and html.escape(UNANSWERED) not in page.split('id="unanswered"')[1]

    [answer] = await first.say(UNANSWERED)  # the answer, with the 解決しましたか？ quick replies on it
    assert answer["text"] == ANSWERS["gift"] and answer["quickReply"]["items"]
    [entry] = await console.audit("faq.updated")
    assert (entry.target, entry.details) == ("faq:gift", {"alternate_added": UNANSWERED})


async def test_csv_import_and_export_are_the_clis(console):
    browser = await console.admin()

    async def upload(body: bytes, replace: bool = False) -> tuple[int, str, str]:
        form = aiohttp.FormData({"csrf_token": await browser.csrf()})
        form.add_field("file", body, filename="faq.csv", content_type="text/csv")
        if replace:
            form.add_field("replace", "on")
        async with browser.client.post(browser.base_url + "/console/faq/import", data=form, allow_redirects=False) as response:
            return response.status, response.headers.get("Location", ""), await response.text()

    status, _, page = await upload("id,question,answer,alternates\nok,質問,回答,\nbad id,質問,,\n".encode())
    assert status == 400 and "何も変更していません" in page and "3行目" in page and "is missing" in page
    assert await entries(console) == {}
    status, location, _ = await upload("id,question,answer,alternates\na,質問A,回答A,言い方1|言い方2\nb,質問B,回答B,\n".encode())
    assert status == 303 and "notice=faq_imported" in location and "created=2" in location
    response, page = await browser.get(location)
    assert "追加 2件" in page
    response, text = await browser.get("/console/faq/export.csv")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    async with console.sessions() as session:
        assert text == faq_store.to_csv(await faq_store.list_entries(session))
    [entry] = await console.audit("faq.imported")
    assert entry.details == {"created": 2, "updated": 0, "disabled": 0, "replace": False}


async def test_support_reads_the_faq_without_the_buttons_to_change_it(console):
    assert (await import_faq(console.kizuna))[0] == 200
    await Chat(console.kizuna.emulator).say(UNANSWERED)
    support = await console.logged_in(await console.add_staff("support@example.com", "support"))
    response, page = await support.get("/console/faq")
    assert response.status == 200 and html.escape(UNANSWERED) in page
    assert "質問を追加" not in page and "言い換えとして追加" not in page and "CSVインポート" not in page
    response, page = await support.get("/console/faq/entries/gift")
    assert response.status == 200 and "<fieldset class=\"form-fields\" disabled>" in page and "無効にする" not in page
    assert (await support.post("/console/faq/alternates", {"faq_id": "gift", "text": UNANSWERED}))[0].status == 403


# -- キーワード応答 ---------------------------------------------------------------------------


async def rules(console: Console) -> list[KeywordRule]:
    async with console.sessions() as session:
        return list((await session.execute(sa.select(KeywordRule).order_by(KeywordRule.id))).scalars())


RULE = {"name": "", "match_type": "contains", "pattern": "駐車場", "reply": "text", "reply_text": "近隣のコインパーキングをご利用ください。",
        "flow_action": "", "priority": "0", "enabled": "on"}


async def test_keyword_replies_are_created_changed_and_deleted(console):
    browser = await console.admin()
    response, page = await browser.get("/console/keyword-rules")
    assert response.status == 200 and "キーワード応答はまだありません" in page
    assert (await browser.post("/console/keyword-rules", RULE))[0].status == 303
    [rule] = await rules(console)
    [reply] = await Chat(console.kizuna.emulator).say("駐車場はありますか")
    assert reply["text"] == RULE["reply_text"]

    response, page = await browser.get(f"/console/keyword-rules/{rule.id}")
    assert response.status == 200 and "駐車場" in page
    flow = {**RULE, "reply": "flow", "flow_action": "register", "priority": "5"}
    assert (await browser.post(f"/console/keyword-rules/{rule.id}", flow))[0].status == 303
    [rule] = await rules(console)
    assert (rule.flow_action, rule.reply_text, rule.priority) == ("register", None, 5)
    assert (await browser.post(f"/console/keyword-rules/{rule.id}/delete"))[0].status == 303
    assert await rules(console) == []
    assert [row.action for row in await console.audit() if row.action.startswith("keyword_rule.")] == [
        "keyword_rule.created", "keyword_rule.updated", "keyword_rule.deleted"]
    assert (await console.audit("keyword_rule.created"))[0].target == f"keyword_rule:{rule.id} 駐車場"


async def test_keyword_reply_refusals_name_the_field_and_change_nothing(console):
    browser = await console.admin()
    for change, field in (
        ({"match_type": "regex", "pattern": "(a+)+"}, "pattern"),
        ({"pattern": ""}, "pattern"),
        ({"reply_text": ""}, "reply_text"),
        ({"reply": "flow", "flow_action": "nonsense"}, "flow_action"),
        ({"priority": "5000"}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"match_type": "fuzzy"}, "match_type"),
    ):
        response, page = await browser.post("/console/keyword-rules", {**RULE, **change})
        assert response.status == 400, change
        assert f'id="error-{field}"' in page, (change, page[page.find("field-error") - 200:][:600])
    assert await rules(console) == []
    assert [row for row in await console.audit() if row.action.startswith("keyword_rule.")] == []
