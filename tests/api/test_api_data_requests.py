"""Data-subject requests over the REST API (issue 16 parts 3 and 5): a customer's export as JSON
and as a zip of CSVs, stop use (a campaign leaves them out; resume brings them back), correction,
the request ledger with its deadline, provision records; admin only; bad input changes nothing."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date

import aiohttp
import sqlalchemy as sa

from kizuna.storage import customers, tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import AuditCustomerRead, AuditEntry, Customer, Interaction, SequenceEnrolment
from kizuna.storage.types import utcnow
from tests.campaigns.test_campaigns import befriend, campaign_texts, create, wait_for_status
from tests.conftest import eventually


async def _registered(kizuna, name: str = "開示 花子"):
    [user] = await befriend(kizuna, name)
    await kizuna.emulator.send_text(user.user_id, "=1+1 こんにちは")  # what a spreadsheet would run as a formula
    customer_id = await kizuna.customer_id(user.user_id)

    async def typed() -> bool:
        async with kizuna.sessions() as session:
            return (await session.execute(sa.select(sa.func.count()).select_from(Interaction).where(
                Interaction.customer_id == customer_id, Interaction.text == "=1+1 こんにちは"))).scalar_one() > 0

    await eventually(typed, what="the message stored")
    async with transaction(kizuna.sessions) as session:
        customer = await session.get(Customer, customer_id)
        customers.complete_registration(customer, profile={
            "full_name": name, "birthday": date(1990, 1, 31), "gender": "female", "prefecture": "東京都",
            "phone": "+819012340000", "email": "hanako.kaiji@example.jp"}, marketing_opt_in=True, consented_at=utcnow(), at=utcnow())
    return user, customer_id


async def _get(kizuna, path: str, token: str | None = None) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession() as client:
        async with client.get(kizuna.url + path, headers={"Authorization": f"Bearer {token or kizuna.admin_token}"}) as response:
            return response.status, await response.read(), dict(response.headers)


async def test_export_json_and_csv_hold_the_whole_record_and_are_recorded(kizuna):
    user, customer_id = await _registered(kizuna)
    status, doc = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/export")
    assert status == 200
    assert doc["customer"]["full_name"] == "開示 花子" and doc["customer"]["email"] == "hanako.kaiji@example.jp"
    assert doc["customer"]["line_user_id"] == user.user_id and doc["customer"]["marketing_opt_in"] is True
    assert "=1+1 こんにちは" in [row["text"] for row in doc["timeline"]]
    assert {row["kind"] for row in doc["identities"]} >= {"line_user_id"}
    assert any(event["payload"].get("message", {}).get("text") == "=1+1 こんにちは" for event in doc["inbound_events"])
    assert [row["kind"] for row in doc["data_requests"]] == ["export"]

    status, body, headers = await _get(kizuna, f"/api/v1/customers/{customer_id}/export?format=csv&recipient=%E5%BC%81%E8%AD%B7%E5%A3%AB&purpose=%E7%B4%9B%E4%BA%89%E5%AF%BE%E5%BF%9C")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == f'attachment; filename="customer-{customer_id}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert {"customer.csv", "identities.csv", "timeline.csv", "orders.csv", "coupon_grants.csv", "conversations.csv"} <= set(archive.namelist())
    text = archive.read("customer.csv").decode("utf-8")
    assert text.startswith("\ufeff")
    [row] = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert row["full_name"] == "開示 花子" and row["birthday"] == "1990-01-31" and row["phone"] == "'+819012340000"
    timeline = list(csv.DictReader(io.StringIO(archive.read("timeline.csv").decode("utf-8").lstrip("\ufeff"))))
    assert "'=1+1 こんにちは" in [line["text"] for line in timeline]  # never a formula

    status, ledger = await kizuna.api("GET", f"/api/v1/data-requests?customer_id={customer_id}")
    assert status == 200 and [(r["kind"], r["status"], r["channel"]) for r in ledger["items"]] == [("export", "done", "api")] * 2
    first = ledger["items"][0]
    assert first["deadline_at"] > first["requested_at"] and first["overdue"] is False
    status, one = await kizuna.api("GET", f"/api/v1/data-requests/{first['id']}")
    assert status == 200 and one == first
    status, provisions = await kizuna.api("GET", "/api/v1/provision-records")
    assert [(p["scope"], p["customer_ids"], p["format"], p["recipient"], p["purpose"]) for p in provisions["items"]] == [
        (f"customer:{customer_id}", [customer_id], "csv", "弁護士", "紛争対応"),
        (f"customer:{customer_id}", [customer_id], "json", "本人（開示請求）", "本人からの開示請求への回答"),
    ]
    async with kizuna.sessions() as session:
        audit = (await session.execute(sa.select(AuditEntry).where(AuditEntry.action == "customer.exported"))).scalars().all()
        read = (await session.execute(sa.select(AuditCustomerRead.customer_id).where(
            AuditCustomerRead.audit_entry_id.in_([entry.id for entry in audit])))).scalars().all()
    assert [entry.target for entry in audit] == [f"customer:{customer_id}"] * 2
    assert read == [customer_id, customer_id]  # the breach report lists both exports


async def test_a_stopped_customer_gets_no_campaign_until_resumed(kizuna):
    stopped, other = await befriend(kizuna, "停止 さん", "通常 さん")
    customer_id = await kizuna.customer_id(stopped.user_id)
    status, row = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/stop", json={"channel": "phone"})
    assert status == 200 and (row["kind"], row["status"], row["channel"]) == ("stop", "done", "phone")
    status, again = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/stop", json={})
    assert status == 409 and again["error"]["code"] == "already_stopped"

    campaign = await create(kizuna)
    done = await wait_for_status(kizuna, campaign["id"], "completed")
    assert campaign_texts(kizuna, stopped) == [] and campaign_texts(kizuna, other) == ["冬のセール開催中！"]
    assert done["stats"]["excluded"]["opted_out"] == 1

    status, row = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/resume", json={})
    assert status == 200 and row["kind"] == "resume"
    second = await create(kizuna, name="春のセール", messages=[{"type": "text", "text": "春のセール！"}])
    await wait_for_status(kizuna, second["id"], "completed")
    assert campaign_texts(kizuna, stopped) == ["春のセール！"]
    timeline = [row["kind"] for row in await kizuna.timeline(stopped.user_id)]
    assert "data_request.stop" in timeline and "data_request.resume" in timeline


async def test_correction_checks_every_field_first_and_is_recorded(kizuna):
    _user, customer_id = await _registered(kizuna, "訂正 太郎")
    status, error = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/correct",
                                     json={"changes": {"email": "new@example.jp", "phone": "not a phone"}})
    assert status == 400 and error["error"]["field"] == "phone"
    status, error = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/correct", json={"changes": {"line_user_id": "x"}})
    assert status == 400 and error["error"]["field"] == "changes.line_user_id"
    status, customer = await kizuna.api("GET", f"/api/v1/customers/{customer_id}")
    assert customer["email"] == "hanako.kaiji@example.jp"  # nothing changed

    status, row = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/correct",
                                   json={"changes": {"email": "Taro.New@Example.jp", "full_name": "訂正　次郎"}})
    assert status == 200 and row["kind"] == "correct" and "email" in row["outcome"]
    status, customer = await kizuna.api("GET", f"/api/v1/customers/{customer_id}")
    assert customer["full_name"] == "訂正 次郎" and customer["email"].lower() == "taro.new@example.jp"
    async with kizuna.sessions() as session:
        [entry] = (await session.execute(sa.select(AuditEntry).where(AuditEntry.action == "customer.corrected"))).scalars()
    assert entry.target == f"customer:{customer_id}" and "次郎" not in str(entry.details)


async def test_only_admins_and_bad_input_changes_nothing(kizuna):
    [user] = await befriend(kizuna, "権限 さん")
    customer_id = await kizuna.customer_id(user.user_id)
    async with transaction(kizuna.sessions) as session:
        _row, marketer = await tokens.create(session, name="mk", role="marketer")
    for method, path in (("GET", f"/api/v1/customers/{customer_id}/export"), ("POST", f"/api/v1/customers/{customer_id}/erase"),
                         ("GET", "/api/v1/data-requests"), ("GET", "/api/v1/provision-records")):
        status, body = await kizuna.api(method, path, token=marketer, json={} if method == "POST" else None)
        assert status == 403, (path, body)
    status, body = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/export?format=xml")
    assert status == 400 and body["error"]["field"] == "format"
    status, body = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/erase", json={"channel": "pigeon"})
    assert status == 400 and body["error"]["field"] == "channel"
    status, body = await kizuna.api("POST", "/api/v1/customers/999999/erase", json={})
    assert status == 404
    status, ledger = await kizuna.api("GET", "/api/v1/data-requests")
    assert ledger["items"] == []
    status, customer = await kizuna.api("GET", f"/api/v1/customers/{customer_id}")
    assert customer["display_name"] == "権限 さん"


async def test_a_stopped_customer_leaves_their_sequences_and_no_trigger_enrols_them(kizuna):
    [user] = await befriend(kizuna, "ステップ さん")
    customer_id = await kizuna.customer_id(user.user_id)
    status, sequence = await kizuna.api("POST", "/api/v1/sequences", json={
        "name": "かご落ち", "trigger": "api_event", "trigger_value": "cart_abandoned",
        "steps": [{"delay_minutes": 60, "messages": [{"type": "text", "text": "お忘れではありませんか"}]}]})
    assert status == 201, sequence
    event = {"customer": {"line_user_id": user.user_id}, "type": "cart_abandoned"}
    status, first = await kizuna.api("POST", "/api/v1/events", json=event)
    assert status in (200, 201) and first["enrolled"] == 1

    status, row = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/stop", json={})
    assert status == 200 and "1 sequence enrolments ended" in row["outcome"]
    status, again = await kizuna.api("POST", "/api/v1/events", json=event)
    assert again["enrolled"] == 0
    async with kizuna.sessions() as session:
        rows = (await session.execute(sa.select(SequenceEnrolment.status, SequenceEnrolment.exit_reason)
                                      .where(SequenceEnrolment.customer_id == customer_id))).all()
    assert [tuple(row) for row in rows] == [("exited", "opted_out")]

    await kizuna.api("POST", f"/api/v1/customers/{customer_id}/resume", json={})
    status, third = await kizuna.api("POST", "/api/v1/events", json=event)
    assert third["enrolled"] == 1


async def test_a_segment_export_is_a_provision_record_with_its_recipient_and_purpose(kizuna):
    await befriend(kizuna, "一 さん", "二 さん")
    status, segment = await kizuna.api("POST", "/api/v1/segments", json={"name": "友だち", "rule": {"field": "followed", "op": "eq", "value": True}})
    assert status == 201, segment
    status, body, headers = await _get(kizuna, f"/api/v1/segments/{segment['id']}/export.csv?recipient=DM%E5%8D%B0%E5%88%B7%E4%BC%9A%E7%A4%BE&purpose=%E5%86%AC%E3%81%AEDM")
    assert status == 200
    status, body, headers = await _get(kizuna, f"/api/v1/segments/{segment['id']}/export.csv")
    assert status == 200
    status, provisions = await kizuna.api("GET", "/api/v1/provision-records")
    assert [(p["scope"], p["customer_count"], p["customer_ids"], p["recipient"], p["purpose"], p["actor"]) for p in provisions["items"]] == [
        (f"segment:{segment['id']}", 2, [], "社内（自社利用）", "マーケティング分析", "token:tests"),
        (f"segment:{segment['id']}", 2, [], "DM印刷会社", "冬のDM", "token:tests"),
    ]
