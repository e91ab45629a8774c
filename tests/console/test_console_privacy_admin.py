"""The privacy admin pages (issue 16): 漏えい調査 lists exactly what a chosen staff account read last
week (clock moved), in the console, its CSV and the REST API; データ保持 edits the policies (a
wrong one changes nothing), dry-runs and purges; API tokens expire (console and CLI)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import sqlalchemy as sa

from kizuna.appkeys import SERVICES
from kizuna.campaigns import retention, segments
from kizuna.storage import tags
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, MediaContent, RetentionPolicy, RetentionRun
from kizuna.storage.types import utcnow
from tests.conftest import eventually

NOW = utcnow()


def move_clock(kizuna, to) -> None:
    kizuna.server.app[SERVICES].clock = lambda: to


async def customers_and_a_segment(console) -> tuple[list[int], int]:
    """Five customers; a segment of the 4th alone (tagged 上得意)."""
    async with transaction(console.sessions) as session:
        rows = [Customer(line_user_id=f"U{index:032x}", display_name=f"お客様{index}", full_name=f"山田 {index}号", followed=True)
                for index in range(1, 6)]
        session.add_all(rows)
        await session.flush()
        for row in rows[3:4]:
            await tags.add(session, row.id, "上得意", actor=None)
        segment = await segments.create(session, "上得意", {"field": "tag", "op": "eq", "value": "上得意"}, now=NOW)
    return [row.id for row in rows], segment.id


def day(moment) -> str:
    return moment.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).date().isoformat()


async def test_the_breach_report_lists_exactly_what_a_staff_member_read_last_week(console, kizuna):
    ids, segment_id = await customers_and_a_segment(console)
    marketer = await console.add_staff("mika@example.com", "marketer")
    other = await console.add_staff("kenta@example.com", "marketer")
    mika = await console.logged_in(marketer, ip="203.0.113.7")
    kenta = await console.logged_in(other, ip="198.51.100.2")

    # Ten days ago: outside the week asked about.
    move_clock(kizuna, NOW - timedelta(days=10))
    assert (await mika.get(f"/console/customers/{ids[4]}"))[0].status == 200
    # Five days ago: three customer pages (one twice, one as a live refresh, which is not a view) and the segment's CSV.
    move_clock(kizuna, NOW - timedelta(days=5))
    for customer_id in (ids[0], ids[1], ids[2], ids[2]):
        assert (await mika.get(f"/console/customers/{customer_id}"))[0].status == 200
    assert (await mika.get(f"/console/customers/{ids[1]}", headers={"X-Kizuna-Refresh": "1"}))[0].status == 200
    response, body = await mika.get(f"/console/segments/{segment_id}/export.csv")
    assert response.status == 200 and "お客様4" in body
    # Someone else's reads are theirs.
    assert (await kenta.get(f"/console/customers/{ids[4]}"))[0].status == 200
    move_clock(kizuna, NOW)

    admin = await console.admin()
    week = {"actor": f"staff:{marketer.id}", "from": day(NOW - timedelta(days=7)), "to": day(NOW)}
    response, page = await admin.get("/console/breach", params=week)
    assert response.status == 200
    shown = [int(value) for value in __import__("re").findall(r'data-customer="(\d+)"', page)]
    # 1-3 viewed and 4 exported five days ago; not 5 (read ten days ago, and by someone else within the week).
    assert shown == [ids[0], ids[1], ids[2], ids[3]]
    assert "203.0.113.7" in page and "山田" not in page  # pseudonymous unless asked

    # The CSV an admin hands over: ids, times, the address; names only when asked for.
    response, text = await admin.get("/console/breach.csv", params=week)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert lines[1][:2] == ["customer_id", "times"] and "name" not in lines[1]
    by_id = {int(line[0]): line for line in lines[2:]}
    assert set(by_id) == set(shown)
    assert by_id[ids[2]][1] == "2" and by_id[ids[0]][4] == "203.0.113.7"
    response, text = await admin.get("/console/breach.csv", params={**week, "names": "1"})
    assert "山田 1号" in text
    assert [entry.target for entry in await console.audit("export") if entry.target.startswith("breach_report")]  # the download is on the record

    # The REST API answers the same.
    status, body = await kizuna.api("GET", "/api/v1/audit/reads", params={
        "actor": f"staff:{marketer.id}", "since": (NOW - timedelta(days=7)).isoformat(), "until": NOW.isoformat()})
    assert status == 200, body
    assert [row["customer_id"] for row in body["customers"]] == shown and body["actor"]["name"] == "mika@example.com"
    status, body = await kizuna.api("GET", "/api/v1/audit/reads", params={
        "actor": f"staff:{marketer.id}", "since": NOW.isoformat(), "until": (NOW - timedelta(days=1)).isoformat()})
    assert status == 400 and body["error"]["field"] == "until"


async def test_an_api_tokens_reads_are_in_its_report(console, kizuna):
    ids, _segment = await customers_and_a_segment(console)
    status, _ = await kizuna.api("GET", f"/api/v1/customers/{ids[0]}")
    assert status == 200
    status, _ = await kizuna.api("GET", f"/api/v1/customers/{ids[1]}/interactions")
    assert status == 200
    async with console.sessions() as session:
        token_id = (await session.execute(sa.text("SELECT id FROM api_tokens WHERE name = 'tests'"))).scalar_one()
    status, body = await kizuna.api("GET", "/api/v1/audit/reads", params={
        "actor": f"token:{token_id}", "since": (NOW - timedelta(hours=1)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat()})
    assert status == 200, body
    assert [(row["customer_id"], row["actions"]) for row in body["customers"]] == [(ids[0], ["customer.read"]), (ids[1], ["timeline.read"])]


async def the_days_scheduled_purge_done(console, kizuna) -> None:
    """When the day's scheduled purge is due (its hour has come in the shop's zone), the app's
    worker runs it on its first look: wait until it has, so that it cannot purge what a test plants."""
    if retention.local_day_if_due(utcnow(), zone="Asia/Tokyo", hour=kizuna.settings.retention_hour) is None:
        return

    async def finished() -> bool:
        async with console.sessions() as session:
            return (await session.execute(sa.select(RetentionRun.id).where(
                RetentionRun.trigger == "schedule", RetentionRun.finished_at.is_not(None)))).first() is not None
    await eventually(finished, what="the day's scheduled retention purge")


async def test_the_retention_page_edits_policies_dry_runs_and_purges(console, kizuna):
    admin = await console.admin()
    await the_days_scheduled_purge_done(console, kizuna)
    async with transaction(console.sessions) as session:
        session.add_all([MediaContent(message_id="old", content_type="image/png", size=1, data=b"x", fetched_at=NOW - timedelta(days=30)),
                         MediaContent(message_id="new", content_type="image/png", size=1, data=b"x", fetched_at=NOW)])
    response, page = await admin.get("/console/retention")
    assert response.status == 200 and "データ保持" in page and 'data-kind="unfollowed_customers"' in page

    form = {}
    for kind, period, unit in (("inbound_events", "90", "days"), ("delivery_details", "13", "months"), ("staff_logins", "90", "days"),
                               ("api_events", "13", "months"), ("media", "7", "days"), ("unfollowed_customers", "24", "months"),
                               ("consent_records", "37", "months")):
        form |= {f"period.{kind}": period, f"unit.{kind}": unit, f"enabled.{kind}": "on"}
    # A wrong value: 400 naming the kind, and nothing stored.
    response, page = await admin.post("/console/retention/policies", {**form, "period.media": "0"}, csrf=await admin.csrf("/console/retention"))
    assert response.status == 400 and "画像・動画・ファイル" in page
    async with console.sessions() as session:
        assert (await session.execute(sa.select(RetentionPolicy))).first() is None
    response, _ = await admin.post("/console/retention/policies", form, csrf=await admin.csrf("/console/retention"))
    assert response.status == 303
    async with console.sessions() as session:
        stored = list((await session.execute(sa.select(RetentionPolicy))).scalars())
    assert [(row.kind, row.period, row.unit) for row in stored] == [("media", 7, "days")]  # only what changed
    response, page = await admin.get("/console/retention")
    media_row = page.split('data-kind="media"')[1].split("</tr>")[0]
    assert 'value="7"' in media_row and "初期設定" not in media_row  # the shop's own period, not the default

    response, _ = await admin.post("/console/retention/run", {"dry_run": "1"}, csrf=await admin.csrf("/console/retention"))
    assert response.status == 303
    response, _ = await admin.post("/console/retention/run", {"dry_run": "0"}, csrf=await admin.csrf("/console/retention"))
    async with console.sessions() as session:
        runs = list((await session.execute(sa.select(RetentionRun).where(RetentionRun.trigger == "console").order_by(RetentionRun.id))).scalars())
        media = sorted((await session.execute(sa.select(MediaContent.message_id))).scalars())
    assert [(run.dry_run, run.counts["media_contents"], run.started_by) for run in runs] == [
        (True, 1, "admin@example.com"), (False, 1, "admin@example.com")]
    assert media == ["new"]
    response, page = await admin.get("/console/retention")
    assert "ドライラン" in page and "削除予定" in page

    # Not for marketers.
    marketer = await console.logged_in(await console.add_staff("m@example.com", "marketer"))
    assert (await marketer.get("/console/retention"))[0].status == 403
    assert (await marketer.get("/console/breach"))[0].status == 403


async def test_an_api_token_expires(console, kizuna):
    admin = await console.admin()
    response, page = await admin.post("/console/api-tokens", {"name": "EC site", "role": "pos", "expires_in": "30"},
                                      csrf=await admin.csrf("/console/api-tokens"))
    assert response.status == 200
    plain = __import__("re").search(r'id="new-token" class="secret">([^<]+)<', page).group(1)
    response, page = await admin.get("/console/api-tokens")
    assert "有効期限" in page and "無期限" not in page.split("EC site")[1].split("</tr>")[0]
    status, _ = await kizuna.api("POST", "/api/v1/orders", token=plain, json={})
    assert status == 400  # accepted as a token (the body is wrong)
    move_clock(kizuna, NOW + timedelta(days=31))
    status, body = await kizuna.api("POST", "/api/v1/orders", token=plain, json={})
    assert status == 401 and body["error"]["code"] == "token_expired"
    response, _ = await admin.post("/console/api-tokens", {"name": "x", "role": "pos", "expires_in": "9999"},
                                   csrf=await admin.csrf("/console/api-tokens"))
    assert response.status == 400


def test_the_command_line_creates_a_token_that_expires(env, capsys):
    from kizuna.bot.cli import main

    assert main(["migrate"]) == 0
    assert main(["token", "create", "--name", "pos", "--role", "pos", "--expires-in-days", "30"]) == 0
    assert ", expires " in capsys.readouterr().out
    assert main(["token", "create", "--name", "pos", "--expires-in-days", "0"]) == 2
