"""The FAQ, keyword-rule, business-hours and threshold endpoints (issue 4): roles, checks,
CSV import errors (row-numbered, all or nothing), export round trip, the OpenAPI doc."""

from __future__ import annotations

import csv
import io

import aiohttp

from kizuna.flows.faq import MatchThresholds
from kizuna.storage import faq as faq_store
from kizuna.storage import tokens
from kizuna.storage.db import transaction
from tests.flows.test_inquiry import ANSWERS, FAQ_CSV, Chat, import_faq

HEADER = "id,question,answer,alternates\n"


async def token_for(kizuna, role: str) -> str:
    async with transaction(kizuna.sessions) as session:
        return (await tokens.create(session, name=f"{role}-tests", role=role))[1]


async def get_text(kizuna, path: str, token: str | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as client:
        async with client.get(kizuna.url + path, headers={"Authorization": f"Bearer {token or kizuna.admin_token}"}) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.text()


async def revision(kizuna) -> int:
    async with kizuna.sessions() as session:
        return await faq_store.faq_revision(session)


async def count(kizuna) -> int:
    return len((await kizuna.api("GET", "/api/v1/faq?limit=1000"))[1]["items"])


ENTRY = {"id": "gift-wrap", "question": "ギフト包装はできますか", "answer": "1点220円で承ります。",
         "alternates": ["ラッピングできますか", " ", "ラッピングできますか"], "category": "order"}


async def test_crud_and_roles(kizuna):
    support, marketer = await token_for(kizuna, "support"), await token_for(kizuna, "marketer")
    pos = await token_for(kizuna, "pos")
    assert (await kizuna.api("POST", "/api/v1/faq", json=ENTRY, token=support))[0] == 403
    assert (await kizuna.api("GET", "/api/v1/faq", token=pos))[0] == 403
    status, created = await kizuna.api("POST", "/api/v1/faq", json=ENTRY, token=marketer)
    assert status == 201, created
    assert created["alternates"] == ["ラッピングできますか"] and created["enabled"] is True
    assert (await kizuna.api("POST", "/api/v1/faq", json=ENTRY))[0] == 409

    status, got = await kizuna.api("GET", "/api/v1/faq/gift-wrap", token=support)
    assert status == 200 and got["answer"] == "1点220円で承ります。"
    rev = await revision(kizuna)
    status, changed = await kizuna.api("PUT", "/api/v1/faq/gift-wrap", json={"answer": "無料です。", "category": None})
    assert status == 200 and changed["answer"] == "無料です。" and changed["question"] == ENTRY["question"]
    assert changed["category"] is None and changed["updated_at"] >= created["updated_at"]
    assert await revision(kizuna) == rev + 1
    # the same values again: nothing changes, no revision
    assert (await kizuna.api("PUT", "/api/v1/faq/gift-wrap", json={"answer": "無料です。"}))[0] == 200
    assert await revision(kizuna) == rev + 1
    assert (await kizuna.api("PUT", "/api/v1/faq/gift-wrap", json={"answer": "x"}, token=support))[0] == 403
    assert (await kizuna.api("DELETE", "/api/v1/faq/gift-wrap", token=support))[0] == 403
    assert (await kizuna.api("DELETE", "/api/v1/faq/gift-wrap"))[1] == {"id": "gift-wrap", "deleted": True}
    assert (await kizuna.api("GET", "/api/v1/faq/gift-wrap"))[0] == 404
    assert (await kizuna.api("PUT", "/api/v1/faq/gift-wrap", json={"answer": "x"}))[0] == 404
    assert (await kizuna.api("DELETE", "/api/v1/faq/gift-wrap"))[0] == 404
    assert await revision(kizuna) == rev + 2


INVALID = [
    ({"id": "bad id"}, "id"),
    ({"id": "export"}, "id"),
    ({"id": "x" * 65}, "id"),
    ({"question": ""}, "question"),
    ({"question": "   "}, "question"),
    ({"answer": "あ" * 5001}, "answer"),
    ({"alternates": ["a|b"]}, "alternates"),
    ({"alternates": ["x"] * 51}, "alternates"),
    ({"colour": "red"}, "colour"),
]


async def test_invalid_entries_are_refused(kizuna):
    for change, field in INVALID:
        status, body = await kizuna.api("POST", "/api/v1/faq", json={**ENTRY, **change})
        assert status == 400, (change, body)
        assert body["error"]["code"] == "invalid_field" and body["error"]["field"] == field, change
    assert await count(kizuna) == 0
    assert (await kizuna.api("POST", "/api/v1/faq", json=ENTRY))[0] == 201
    for change, field in ((({"question": ""}, "question")), ({"alternates": ["a|b"]}, "alternates"), ({"id": "x"}, "id")):
        status, body = await kizuna.api("PUT", "/api/v1/faq/gift-wrap", json=change)
        assert status == 400 and body["error"]["field"] == field, (change, body)
    assert (await kizuna.api("GET", "/api/v1/faq/gift-wrap"))[1]["question"] == ENTRY["question"]


async def test_listing_pages_and_filters(kizuna):
    assert (await import_faq(kizuna))[0] == 200
    await kizuna.api("PUT", "/api/v1/faq/hours", json={"enabled": False})
    status, page = await kizuna.api("GET", "/api/v1/faq?limit=10")
    assert status == 200 and len(page["items"]) == 10 and page["next_after"] == page["items"][-1]["id"]
    ids = [item["id"] for item in page["items"]]
    while page["next_after"]:
        page = (await kizuna.api("GET", f"/api/v1/faq?limit=10&after={page['next_after']}"))[1]
        ids += [item["id"] for item in page["items"]]
    assert ids == sorted(ANSWERS)
    disabled = (await kizuna.api("GET", "/api/v1/faq?enabled=false"))[1]["items"]
    assert [item["id"] for item in disabled] == ["hours"]


# -- CSV import and export -----------------------------------------------------------------------


async def test_import_reports_and_reimport_updates_by_id(kizuna):
    status, report = await import_faq(kizuna)
    assert status == 200
    assert sorted(report["created"]) == sorted(ANSWERS) and report["updated"] == [] and report["kept"] == []
    assert report["warnings"] == ["row 3: has an unquoted comma in a number (like 5,500); it was read as part of the number"]
    assert (await kizuna.api("GET", "/api/v1/faq/shipping_fee"))[1]["answer"] == ANSWERS["shipping_fee"]
    rev = await revision(kizuna)

    status, again = await import_faq(kizuna)
    assert (len(again["unchanged"]), again["created"], again["updated"]) == (len(ANSWERS), [], [])
    assert await revision(kizuna) == rev  # nothing changed, no rebuild anywhere

    small = (HEADER + "hours,営業時間は?,10時から19時です。,何時まで?|何時から?\nnew_one,新しい質問,新しい答え,\n").encode()
    status, partial = await import_faq(kizuna, small)
    assert status == 200, partial
    assert (partial["created"], partial["updated"]) == (["new_one"], ["hours"])
    assert len(partial["kept"]) == len(ANSWERS) - 1 and partial["disabled"] == []
    hours = (await kizuna.api("GET", "/api/v1/faq/hours"))[1]
    assert hours["alternates"] == ["何時まで?", "何時から?"] and hours["enabled"] is True
    assert await revision(kizuna) == rev + 1

    status, replaced = await import_faq(kizuna, small, "?replace=true")
    assert status == 200 and len(replaced["disabled"]) == len(ANSWERS) - 1
    assert sorted(replaced["unchanged"]) == ["hours", "new_one"]
    enabled = (await kizuna.api("GET", "/api/v1/faq?enabled=true"))[1]["items"]
    assert sorted(item["id"] for item in enabled) == ["hours", "new_one"]
    assert await count(kizuna) == len(ANSWERS) + 1  # disabled, not deleted


BAD_FILES = [
    ("missing fields", (HEADER + "a,質問,答え,\n,質問,答え,\nb,,答え,\nc,質問,,\n").encode(),
     [(3, "id"), (4, "question"), (5, "answer")]),
    ("duplicate ids", (HEADER + "a,質問1,答え,\nb,質問2,答え,\na,質問3,答え,\n").encode(), [(4, "id")]),
    ("over-long", (HEADER + "a,質問,\"" + "長" * 5001 + "\",\nb," + "問" * 201 + ",答え,\n").encode(),
     [(2, "answer"), (3, "question")]),
    ("bad id", (HEADER + "営業時間,質問,答え,\n").encode(), [(2, "id")]),
    ("columns", (HEADER + "a,質問,答え,,extra,more\n").encode(), [(2, None)]),
    ("bad header", "id,question,anwser,alternates\na,q,a,\n".encode(), [(1, None)]),
    ("not utf-8", (HEADER + "a,質問,答え,\n").encode("cp932"), [(None, None)]),
    ("empty", b"", [(None, None)]),
    ("header only", HEADER.encode(), [(None, None)]),
    ("bad enabled", "id,question,answer,alternates,enabled\na,q,a,,maybe\n".encode(), [(2, "enabled")]),
    ("quote", (HEADER + 'a,"unterminated,answer,\n').encode(), [(2, None)]),
]


async def test_bad_files_are_refused_with_row_numbers_and_change_nothing(kizuna):
    assert (await import_faq(kizuna, (HEADER + "keep,残す質問,残す答え,\n").encode()))[0] == 200
    rev = await revision(kizuna)
    for name, body, expected in BAD_FILES:
        status, error = await import_faq(kizuna, body, "?replace=true")
        assert status == 400, (name, error)
        assert error["error"]["code"] == "invalid_csv"
        assert error["error"]["message"].startswith("nothing was imported: ")
        assert [(e["row"], e["field"]) for e in error["error"]["errors"]] == expected, name
    assert await revision(kizuna) == rev
    assert [item["id"] for item in (await kizuna.api("GET", "/api/v1/faq"))[1]["items"]] == ["keep"]
    assert (await kizuna.api("GET", "/api/v1/faq/keep"))[1]["enabled"] is True


async def test_not_utf8_names_the_line_and_the_likely_encoding(kizuna):
    status, error = await import_faq(kizuna, (HEADER + "a,q,a,\nb,質問,答え,\n").encode("cp932"))
    assert status == 400
    assert error["error"]["errors"] == [{"row": None, "line": 3, "field": None,
                                         "message": 'is not UTF-8 text (it looks like Shift_JIS; save it as "CSV UTF-8")'}]


async def test_bom_crlf_quoted_newlines_and_optional_columns(kizuna):
    body = ("\ufeffquestion,id,alternates,answer,category,enabled\r\n"
            "\"送料は?\",fee,\"送料 | 配送料\",\"全国一律550円です。\r\n5,500円以上で無料。\",order,yes\r\n"
            "\r\n"
            "返品できますか,returns,,\"未開封なら8日以内です。\",,false\r\n").encode()
    status, report = await import_faq(kizuna, body)
    assert status == 200, report
    fee = (await kizuna.api("GET", "/api/v1/faq/fee"))[1]
    assert fee["answer"] == "全国一律550円です。\r\n5,500円以上で無料。"
    assert fee["alternates"] == ["送料", "配送料"] and fee["category"] == "order" and fee["enabled"] is True
    assert (await kizuna.api("GET", "/api/v1/faq/returns"))[1]["enabled"] is False


async def test_export_round_trips(kizuna):
    assert (await import_faq(kizuna))[0] == 200
    await kizuna.api("POST", "/api/v1/faq", json={**ENTRY, "answer": "改行\nと \"引用符\" と, カンマ"})
    await kizuna.api("PUT", "/api/v1/faq/hours", json={"enabled": False})
    before = (await kizuna.api("GET", "/api/v1/faq?limit=1000"))[1]["items"]

    support = await token_for(kizuna, "support")
    status, content_type, text = await get_text(kizuna, "/api/v1/faq/export", token=support)
    assert status == 200 and content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == ["id", "question", "answer", "alternates", "category", "enabled"]
    assert {row["id"]: row["answer"] for row in rows}["shipping_fee"] == ANSWERS["shipping_fee"]

    # into an empty database: the same entries come back
    for item in before:
        await kizuna.api("DELETE", f"/api/v1/faq/{item['id']}")
    status, report = await import_faq(kizuna, text.encode())
    assert status == 200 and len(report["created"]) == len(before) and report["warnings"] == []
    after = (await kizuna.api("GET", "/api/v1/faq?limit=1000"))[1]["items"]
    keys = ("id", "question", "answer", "alternates", "category", "enabled")
    assert [{k: item[k] for k in keys} for item in after] == [{k: item[k] for k in keys} for item in before]
    # and the export of that is the same file
    assert (await get_text(kizuna, "/api/v1/faq/export"))[2] == text


# -- unanswered, thresholds, OpenAPI ---------------------------------------------------------------


async def test_unanswered_report_groups_and_orders(kizuna):
    assert (await import_faq(kizuna))[0] == 200
    first, second = Chat(kizuna.emulator, "A"), Chat(kizuna.emulator, "B")
    for chat, text in ((first, "駐輪場はありますか"), (second, "駐輪場はありますか"), (first, "ペットは入れますか"),
                       (second, "駐輪場はありますか")):
        await chat.say(text)
    support = await token_for(kizuna, "support")
    status, report = await kizuna.api("GET", "/api/v1/faq/unanswered?days=7&limit=10", token=support)
    assert status == 200
    assert [(i["text"], i["count"], i["customers"]) for i in report["items"]] == [
        ("駐輪場はありますか", 3, 2), ("ペットは入れますか", 1, 1)]
    assert report["items"][0]["last_asked_at"].endswith(("Z", "+00:00"))
    assert (await kizuna.api("GET", "/api/v1/faq/unanswered?days=0"))[0] == 400


async def test_thresholds_are_a_shop_setting(kizuna):
    assert (await import_faq(kizuna))[0] == 200
    chat = Chat(kizuna.emulator)
    [answer] = await chat.say("送料かかりますか")
    assert answer["text"] == ANSWERS["shipping_fee"]
    status, body = await kizuna.api("GET", "/api/v1/inquiry-settings")
    assert status == 200 and body["unanswered_handoff_after"] == 2 and body["overrides"] == {}

    marketer = await token_for(kizuna, "marketer")
    assert (await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"thresholds": {"answer": 1}}, token=marketer))[0] == 403
    strict = {"answer": 0.99, "answer_alone": 0.99, "disambiguate": 0.98}
    status, body = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"thresholds": strict})
    assert status == 200 and body["overrides"] == strict
    assert body["thresholds"]["margin"] == MatchThresholds().margin and body["thresholds"]["answer"] == 0.99
    [reply] = await chat.say("送料かかりますか")
    assert reply["text"].startswith("申し訳ございません")  # below every threshold now: a person is offered

    for bad in ({"answer": 1.5}, {"nonsense": 0.1}, {"max_offers": 5}):
        status, error = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"thresholds": bad})
        assert status == 400 and error["error"]["field"].startswith("thresholds."), error
    assert (await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"thresholds": {}}))[1]["overrides"] == {}
    [answer] = await chat.say("送料かかりますか")
    assert answer["text"] == ANSWERS["shipping_fee"]


async def test_the_unanswered_questions_rule_is_a_shop_setting(kizuna):
    """After how many unanswered questions in a row a person takes over: set beside the
    thresholds, checked by the same service, and neither setting undoes the other."""
    marketer = await token_for(kizuna, "marketer")
    assert (await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"unanswered_handoff_after": 3}, token=marketer))[0] == 403
    status, body = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"unanswered_handoff_after": 3})
    assert status == 200 and body["unanswered_handoff_after"] == 3 and body["overrides"] == {}
    status, body = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"thresholds": {"answer": 0.5}})
    assert status == 200 and body["overrides"] == {"answer": 0.5} and body["unanswered_handoff_after"] == 3
    status, body = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"unanswered_handoff_after": 0})
    assert status == 200 and body["overrides"] == {"answer": 0.5} and body["unanswered_handoff_after"] == 0
    assert (await kizuna.api("GET", "/api/v1/inquiry-settings"))[1]["unanswered_handoff_after"] == 0
    for bad in (-1, 11, 2.5, "2", True, None):
        status, error = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={"unanswered_handoff_after": bad})
        assert status == 400 and error["error"]["field"] == "unanswered_handoff_after", (bad, error)
    status, body = await kizuna.api("PUT", "/api/v1/inquiry-settings", json={})
    assert status == 200 and body["unanswered_handoff_after"] == 0  # nothing sent, nothing changed
    async with kizuna.sessions() as session:
        assert (await faq_store.read_settings(session)).thresholds == {"answer": 0.5}  # the rule is kept apart


def test_the_endpoints_are_in_the_openapi_document():
    from kizuna.api import openapi_document

    paths = openapi_document()["paths"]
    for path, methods in {
        "/api/v1/faq": {"get", "post"}, "/api/v1/faq/{faq_id}": {"get", "put", "delete"},
        "/api/v1/faq/import": {"post"}, "/api/v1/faq/export": {"get"}, "/api/v1/faq/unanswered": {"get"},
        "/api/v1/keyword-rules": {"get", "post"}, "/api/v1/keyword-rules/{id}": {"get", "put", "delete"},
        "/api/v1/business-hours": {"get", "put"}, "/api/v1/inquiry-settings": {"get", "put"},
    }.items():
        assert set(paths[path]) == methods, path
    assert paths["/api/v1/faq"]["post"]["x-roles"] == ["admin", "marketer"]
    assert paths["/api/v1/faq"]["get"]["x-roles"] == ["admin", "marketer", "support"]
    assert paths["/api/v1/faq/{faq_id}"]["get"]["parameters"][0]["schema"]["type"] == "string"
    assert FAQ_CSV.exists()
