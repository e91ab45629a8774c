"""What staff change through the REST API is in the audit log, as from the console: the token by
name is who, in the same transaction as the change (a refused change leaves no entry)."""

from __future__ import annotations

import sqlalchemy as sa

from kizuna.storage.models import AuditEntry


async def entries(kizuna) -> list[AuditEntry]:
    async with kizuna.sessions() as session:
        return list((await session.execute(sa.select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def test_api_changes_are_audited_with_the_token_as_who(kizuna):
    entry = {"id": "gift-wrap", "question": "ギフト包装はできますか", "answer": "1点220円で承ります。"}
    assert (await kizuna.api("POST", "/api/v1/faq", json=entry))[0] == 201
    assert (await kizuna.api("POST", "/api/v1/faq", json=entry))[0] == 409  # refused: no entry
    assert (await kizuna.api("PUT", "/api/v1/texts/greeting/ja", json={"text": "いらっしゃいませ"}))[0] == 200
    rule = {"match_type": "contains", "pattern": "駐車場", "reply_text": "ありません"}
    status, created = await kizuna.api("POST", "/api/v1/keyword-rules", json=rule)
    assert status == 201
    assert (await kizuna.api("DELETE", f"/api/v1/keyword-rules/{created['id']}"))[0] == 200
    assert (await kizuna.api("DELETE", f"/api/v1/keyword-rules/{created['id']}"))[0] == 404
    assert (await kizuna.api("PUT", "/api/v1/business-hours", json={"weekly": {"mon": [["10:00", "20:00"]]}}))[0] == 200
    coupon = {"title": "10%OFF", "discount_type": "percent", "discount_value": 10, "valid_days": 30}
    assert (await kizuna.api("POST", "/api/v1/coupons", json=coupon))[0] == 201

    log = await entries(kizuna)
    assert [(row.action, row.target) for row in log] == [
        ("faq.created", "faq:gift-wrap"), ("text.changed", "text:greeting/ja"),
        ("keyword_rule.created", f"keyword_rule:{created['id']} 駐車場"),
        ("keyword_rule.deleted", f"keyword_rule:{created['id']} 駐車場"),
        ("business_hours.changed", "business_hours"), ("coupon.created", "coupon:1 10%OFF"),
    ]
    assert {row.actor for row in log} == {"token:tests"} and all(row.ip and row.actor_staff_id is None for row in log)
