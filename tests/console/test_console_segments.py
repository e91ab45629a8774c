"""セグメント in the console over real HTTP: the list with the presets, the builder (a preset
opened filled in, rows added and removed without JS, an invalid rule shown beside its row),
the live count's JSON (the service's count), save → the segment's page, and the CSV export
(formula-safe, UTF-8 with BOM, audited). Segment and customer names are attacker-controlled:
shown escaped, exported neutralised."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import sqlalchemy as sa

from kizuna.campaigns import segments
from kizuna.storage import customer_metrics, orders
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, Order, OrderCreate, Segment
from kizuna.storage.types import utcnow

HOSTILE = '=HYPERLINK("x")'
MARKUP = "<img src=x onerror=alert(1)>"
HAIR = {"match": "all", "field_0": "purchased_category", "op_0": "eq", "value_0": "ヘアケア", "within_0": "90",
        "field_1": "rfm_r", "op_1": "gte", "value_1": "4", "field_2": "registered", "op_2": "eq", "value_2": "true"}


async def shop(console) -> dict[str, int]:
    """Three buyers of hair care (two of them registered members, one 120 days ago) and one of skin care."""
    now = utcnow()
    async with transaction(console.sessions) as session:
        for number, (email, category, days) in enumerate((("a@example.com", "ヘアケア", 3), ("b@example.com", "ヘアケア", 20),
                                                            ("c@example.com", "ヘアケア", 120), ("d@example.com", "スキンケア", 5))):
            await orders.upsert(session, [OrderCreate.model_validate({
                "external_id": f"S-{number}", "ordered_at": (now - timedelta(days=days)).isoformat(), "total": 3000 + number,
                "email": email, "items": [{"sku": f"SKU-{number}", "category": category, "unit_price": 3000 + number}],
            })], now=now, source="test")
        owner = dict((await session.execute(sa.select(Order.external_id, Order.customer_id))).all())
        people = {email: await session.get(Customer, owner[f"S-{number}"])
                  for number, email in enumerate(("a@example.com", "b@example.com", "c@example.com", "d@example.com"))}
        for email in ("a@example.com", "c@example.com", "d@example.com"):
            people[email].registered = True
        people["a@example.com"].full_name = HOSTILE
        people["c@example.com"].full_name = MARKUP
        await customer_metrics.refresh_population(session)  # the deciles (else only when a worker's hourly run comes)
    return {email: row.id for email, row in people.items()}


async def test_the_list_shows_presets_and_saved_segments(console):
    browser = await console.admin()
    response, page = await browser.get("/console/segments")
    assert response.status == 200
    for name in ("優良顧客", "休眠顧客", "離脱予備軍", "新規顧客", "F2転換候補", "誕生月"):
        assert name in page
    assert "保存したセグメントはまだありません" in page
    response, page = await browser.get("/console/segments/new?preset=dormant")
    assert response.status == 200
    assert 'value="休眠顧客"' in page and 'name="field_1"' in page and 'value="180"' in page
    assert '<option value="recency_days" selected>' in page and '<option value="gt" selected>' in page
    response, page = await browser.get("/console/segments/new?r=4&f=2")
    assert '<option value="rfm_r" selected>' in page and '<option value="rfm_f" selected>' in page


async def test_the_builder_without_js_adds_removes_and_counts(console):
    ids = await shop(console)
    browser = await console.admin()
    response, page = await browser.post("/console/segments/new", {**HAIR, "action": "add"})
    assert response.status == 200 and 'name="field_3"' in page
    assert "該当: 1人" in page  # a (c bought 120 days ago, b is no member, d bought skin care)
    response, page = await browser.post("/console/segments/new", {**HAIR, "action": "remove-1"})
    assert re.findall(r'data-row data-index="(\d+)"', page) == ["0", "1"]
    assert '<option value="rfm_r" selected>' not in page and '<option value="registered" selected>' in page
    assert "該当: 1人" in page
    response, page = await browser.post("/console/segments/new", {**HAIR, "within_0": "", "action": "refresh"})
    assert "該当: 1人" in page  # c's R is 1 (120 days): still out
    assert html.escape(HOSTILE) in page or HOSTILE.replace('"', "&#34;") in page
    assert ids  # (used by the names above)


async def test_the_live_count_is_the_services(console):
    await shop(console)
    browser = await console.admin()
    token = await browser.csrf("/console/segments/new")
    response, text = await browser.post("/console/segments/preview", HAIR, csrf=token)
    assert response.status == 200 and response.content_type == "application/json"
    answer = (await _json(text))
    async with console.sessions() as session:
        expected = await segments.preview(session, {"all": [
            {"field": "purchased_category", "op": "eq", "value": "ヘアケア", "within_days": 90},
            {"field": "rfm_r", "op": "gte", "value": 4}, {"field": "registered", "op": "eq", "value": True}]}, now=utcnow())
    assert answer["count"] == expected.count == 1
    assert answer["text"] == "該当: 1人" and answer["sample"][0]["name"] == HOSTILE and answer["sample"][0]["member"] is True
    response, text = await browser.post("/console/segments/preview", {**HAIR, "match": "any"}, csrf=token)
    assert (await _json(text))["count"] == 4  # any: every buyer is of some condition (registered or hair care)

    # refused: the service's message, for the row it names (never a 500)
    response, text = await browser.post("/console/segments/preview", {**HAIR, "value_1": "four"}, csrf=token)
    assert response.status == 400
    answer = await _json(text)
    assert answer["row"] == 1 and answer["error"] == "条件2の値: 整数で入力してください（must be an integer）"
    response, _ = await browser.post("/console/segments/preview", HAIR, csrf="wrong")
    assert response.status == 403

    response, _ = await browser.post("/console/language", {"locale": "en", "next": "/console/segments/new"})
    assert response.status == 303
    response, text = await browser.post("/console/segments/preview", {**HAIR, "value_1": "four"}, csrf=token)
    assert (await _json(text))["error"] == "Condition 2, value: must be an integer"
    response, text = await browser.post("/console/segments/preview", HAIR, csrf=token)
    assert (await _json(text))["text"] == "Matching: 1"


async def test_an_invalid_rule_is_shown_beside_the_form(console):
    browser = await console.admin()
    for form, message in (({**HAIR, "value_1": "9"}, "条件2の値: 1〜5の範囲で入力してください（must be from 1 to 5）"),
                          ({**HAIR, "field_2": "no_such_field"}, "条件3の項目: 項目を選び直してください（unknown field"),
                          ({**HAIR, "within_0": "0"}, "条件1の期間: 1〜36500の整数で入力してください（must be an integer from 1 to 36500）"),
                          ({**HAIR, "op_1": "between", "value_1": "5", "value2_1": "2"},
                           "条件2の値: 下限は上限以下にしてください（low must not be more than high）")):
        for action in ("refresh", "save"):
            response, page = await browser.post("/console/segments/new", {**form, "name": "x", "action": action})
            assert response.status == (400 if action == "save" else 200), page
            assert message in html.unescape(page) and "cond-invalid" in page
    response, page = await browser.post("/console/segments/new", {**HAIR, "name": "  ", "action": "save"})
    assert response.status == 400 and "セグメント名を100文字以内で入力してください" in page
    async with console.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(Segment))).scalar_one() == 0


async def test_save_shows_the_segment_and_exports_it(console):
    ids = await shop(console)
    browser = await console.admin()
    response, _ = await browser.post("/console/segments/new", {**HAIR, "name": MARKUP, "action": "save"})
    assert response.status == 303
    location = response.headers["Location"]
    assert re.fullmatch(r"/console/segments/\d+\?notice=created", location)
    segment_id = int(location.split("/")[-1].split("?")[0])
    response, page = await browser.get(location)
    assert response.status == 200
    assert MARKUP not in page and html.escape(MARKUP) in page
    assert "セグメントを保存しました。" in page and "該当: 1人" in page
    assert "購入したカテゴリ: 「ヘアケア」（90日以内） かつ Rスコア（最新購入）: 4以上 かつ 会員登録: はい" in page
    assert f'data-customer="{ids["a@example.com"]}"' in page and "3,000円" in page

    response, page = await browser.get("/console/segments")
    assert html.escape(MARKUP) in page and "1人" in page

    response, body = await _download(browser, f"/console/segments/{segment_id}/export.csv")
    assert response.status == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="segment-{segment_id}.csv"'
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [row["id"] for row in rows] == [str(ids["a@example.com"])]
    assert rows[0]["full_name"] == "'" + HOSTILE  # a formula no more
    assert rows[0]["registered"] == "true" and rows[0]["monetary"] == "3000" and rows[0]["rfm_r"] == "5"
    [entry] = await console.audit("export")
    assert entry.actor == "admin@example.com" and entry.target == f"segment:{segment_id} {MARKUP}"
    assert entry.details == {"format": "csv", "via": "console"}

    response, _ = await browser.get("/console/segments/999999")
    assert response.status == 404
    response, _ = await _download(browser, "/console/segments/999999/export.csv")
    assert response.status == 404
    assert len(await console.audit("export")) == 1


async def test_formula_cells_are_neutralised():
    from kizuna.campaigns.segment_export import safe_cell

    for risky in ("=1+1", "+81", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(risky) == "'" + risky
    assert safe_cell("山田") == "山田" and safe_cell(-5) == "-5" and safe_cell(None) == "" and safe_cell(True) == "true"


async def _json(text: str) -> dict:
    import json

    return json.loads(text)


async def _download(browser, path: str):
    async with browser.client.get(browser.base_url + path, allow_redirects=False) as response:
        return response, await response.read()


async def test_the_analytics_page_embeds_its_figures_as_json(console):
    import json

    await shop(console)
    browser = await console.admin()
    response, page = await browser.get("/console/analytics?days=90")
    assert response.status == 200
    for title in ("友だち追加・ブロック数（日別）", "会員登録数（日別）", "RFM分析（R×F）", "デシル別の売上（累計）",
                  "F2転換率（初回購入月別）", "リピート率（月別）"):
        assert title in page
    found = re.search(r'<script type="application/json" id="analytics-data">(.*?)</script>', page, re.S)
    charts = json.loads(found.group(1))
    assert set(charts) == {"friends", "registrations", "deciles", "f2", "repeat"}
    assert len(charts["friends"]["labels"]) == 90 and sum(charts["deciles"]["datasets"][0]["data"]) == 3000 + 3001 + 3002 + 3003
    # the RFM grid's cells open the builder with R and F; the four buyers are in R5/R4 (F1) and R1 (F1)
    cells = dict(re.findall(r'data-rfm="(\d-\d)"\s+title="[^"]*"\s+aria-label="[^"]*">([\d,]+)</a>', page))
    assert len(cells) == 25 and cells["5-1"] == "3" and cells["1-1"] == "0" and cells["2-1"] == "1"
    assert 'href="/console/segments/new?r=5&amp;f=1"' in page
    assert '<script src="/console/static/vendor/chart.umd.min.js?v=' in page


async def test_a_stored_rule_the_language_no_longer_takes_never_breaks_a_page(console):
    """(A rule saved before the language changed, or written to the database by hand.)"""
    browser = await console.admin()
    async with transaction(console.sessions) as session:
        segment = Segment(name="古い条件", rule={"all": [{"field": "gone", "op": "eq", "value": 1}]}, created_at=utcnow(),
                          updated_at=utcnow())
        session.add(segment)
    response, page = await browser.get("/console/segments")
    assert response.status == 200 and "古い条件" in page
    response, page = await browser.get(f"/console/segments/{segment.id}")
    assert response.status == 200 and "rule.all[0].field: unknown field" in page
    response, _ = await _download(browser, f"/console/segments/{segment.id}/export.csv")
    assert response.status == 409
    assert await console.audit("export") == []
