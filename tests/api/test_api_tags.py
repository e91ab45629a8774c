"""Tags over the REST API (real HTTP, real database): a customer's tags added and removed through
the console's own service (audited), the tags in use with their counts, and a tag for every
customer of a saved segment at once (set-based; run twice, the second changes nothing)."""

from __future__ import annotations

from urllib.parse import quote

import sqlalchemy as sa

from kizuna.storage import customers, tags, tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import AuditEntry


async def a_customer(kizuna, n: int = 0) -> int:
    async with transaction(kizuna.sessions) as session:
        customer, _ = await customers.get_or_create(session, f"U{n:032d}", None)
    return customer.id


async def audit_rows(kizuna, action: str) -> list[AuditEntry]:
    async with kizuna.sessions() as session:
        return list((await session.execute(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))).scalars())


async def test_add_list_and_remove_a_customers_tags(kizuna):
    customer_id = await a_customer(kizuna)
    assert await kizuna.api("GET", f"/api/v1/customers/{customer_id}/tags") == (200, {"customer_id": customer_id, "tags": []})

    status, body = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "ＶＩＰ"})
    assert (status, body) == (201, {"customer_id": customer_id, "tags": ["VIP"]})  # stored normalised
    status, body = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "VIP"})
    assert (status, body["tags"]) == (200, ["VIP"])  # had it already: nothing changes
    assert (await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "常連 さん"}))[0] == 201
    assert (await kizuna.api("GET", f"/api/v1/customers/{customer_id}/tags"))[1]["tags"] == ["VIP", "常連 さん"]

    [added, _] = await audit_rows(kizuna, "customer.edited")
    assert (added.actor, added.details) == ("token:tests", {"tag_added": "VIP"})

    async with transaction(kizuna.sessions) as session:  # one tag on a second customer, for the counts
        other = await a_customer(kizuna, 1)
        await tags.add(session, other, "VIP", actor=None)
    assert await kizuna.api("GET", "/api/v1/tags") == (200, {"items": [{"tag": "VIP", "customers": 2}, {"tag": "常連 さん", "customers": 1}]})

    status, _ = await _delete(kizuna, f"/api/v1/customers/{customer_id}/tags/{quote('常連 さん')}")
    assert status == 204
    status, body = await _delete(kizuna, f"/api/v1/customers/{customer_id}/tags/{quote('常連 さん')}")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert (await kizuna.api("GET", f"/api/v1/customers/{customer_id}/tags"))[1]["tags"] == ["VIP"]
    assert [row.details for row in await audit_rows(kizuna, "customer.edited")][-1] == {"tag_removed": "常連 さん"}
    # a tag with a slash: percent-encoded in the path
    assert (await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "EC/店舗"}))[0] == 201
    assert (await _delete(kizuna, f"/api/v1/customers/{customer_id}/tags/{quote('EC/店舗', safe='')}"))[0] == 204
    assert (await kizuna.api("GET", f"/api/v1/customers/{customer_id}/tags"))[1]["tags"] == ["VIP"]


async def _delete(kizuna, path: str) -> tuple[int, dict | None]:
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {kizuna.admin_token}"}) as client:
        async with client.delete(kizuna.url + path) as response:
            return response.status, (await response.json() if response.status != 204 else None)


async def test_unknown_customers_and_bad_tags_are_refused(kizuna):
    customer_id = await a_customer(kizuna)
    for method in ("GET", "POST"):
        status, body = await kizuna.api(method, "/api/v1/customers/999/tags", json={"tag": "VIP"})
        assert status == 404, body
    assert (await _delete(kizuna, "/api/v1/customers/999/tags/VIP"))[0] == 404
    for bad in ({"tag": ""}, {"tag": "   "}, {"tag": "x" * 41}, {"tag": "a\u0007b"}, {"tag": "㍿" * 20}, {}, {"tag": 3},
                {"tag": "VIP", "colour": "red"}):
        status, body = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json=bad)
        assert status == 400, (bad, body)
        assert body["error"]["field"] in ("tag", "colour"), (bad, body)
    status, body = await _delete(kizuna, f"/api/v1/customers/{customer_id}/tags/{'x' * 41}")
    assert status == 400 and body["error"]["field"] == "tag"
    assert (await kizuna.api("GET", f"/api/v1/customers/{customer_id}/tags"))[1]["tags"] == []
    assert await audit_rows(kizuna, "customer.edited") == []


async def test_a_customer_has_at_most_fifty_tags(kizuna):
    customer_id = await a_customer(kizuna)
    for n in range(tags.MAX_TAGS_PER_CUSTOMER):
        assert (await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": f"t{n}"}))[0] == 201
    status, body = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "one more"})
    assert status == 400 and body["error"]["field"] == "tag" and "at most 50" in body["error"]["message"]


# -- in bulk, for a saved segment ------------------------------------------------------------------


def an_order(n: int, total: int) -> dict:
    return {"external_id": f"EC-{n}", "ordered_at": "2026-11-01T10:00:00+09:00", "total": total, "email": f"c{n}@example.com"}


async def _segment(kizuna, rule: dict, name: str = "5,000円以上") -> int:
    status, saved = await kizuna.api("POST", "/api/v1/segments", json={"name": name, "rule": rule})
    assert status == 201, saved
    return saved["id"]


async def _count(kizuna, rule: dict) -> int:
    status, body = await kizuna.api("POST", "/api/v1/segments/preview", json={"rule": rule})
    assert status == 200, body
    return body["count"]


async def test_tag_a_segment_then_the_tag_rule_counts_exactly_its_members(kizuna):
    batch = {"orders": [an_order(n, 1000 * (n + 1)) for n in range(8)]}  # spend 1,000 .. 8,000
    assert (await kizuna.api("POST", "/api/v1/orders", json=batch))[0] == 200
    big_spenders = {"field": "monetary", "op": "gte", "value": 5000}
    segment_id = await _segment(kizuna, big_spenders)
    tagged = {"field": "tag", "op": "eq", "value": "上得意"}
    assert await _count(kizuna, tagged) == 0

    status, body = await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "上得意", "action": "add"})
    assert (status, body) == (200, {"segment_id": segment_id, "tag": "上得意", "action": "add", "matched": 4, "changed": 4})
    assert await _count(kizuna, tagged) == 4
    both = {"all": [tagged, big_spenders]}
    assert await _count(kizuna, both) == 4  # exactly the segment's members, nobody else

    # again: nothing changes
    status, body = await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "上得意", "action": "add"})
    assert (status, body["matched"], body["changed"]) == (200, 4, 0)
    assert await _count(kizuna, tagged) == 4

    # one member untagged by hand is tagged again; a non-member tagged by hand keeps the tag
    status, page = await kizuna.api("GET", f"/api/v1/segments/{segment_id}/customers")
    member = page["items"][0]["id"]
    assert (await _delete(kizuna, f"/api/v1/customers/{member}/tags/{quote('上得意')}"))[0] == 204
    outsider = (await kizuna.api("POST", "/api/v1/segments/preview", json={"rule": {"field": "monetary", "op": "lt", "value": 2000}}))[1]["sample"][0]["id"]
    assert (await kizuna.api("POST", f"/api/v1/customers/{outsider}/tags", json={"tag": "上得意"}))[0] == 201
    body = (await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "上得意", "action": "add"}))[1]
    assert (body["matched"], body["changed"]) == (4, 1)
    assert await _count(kizuna, tagged) == 5

    # remove: the members lose it, the outsider keeps it; twice changes nothing
    body = (await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "上得意", "action": "remove"}))[1]
    assert (body["matched"], body["changed"]) == (4, 4)
    assert await _count(kizuna, tagged) == 1
    assert (await kizuna.api("GET", f"/api/v1/customers/{outsider}/tags"))[1]["tags"] == ["上得意"]
    body = (await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "上得意", "action": "remove"}))[1]
    assert body["changed"] == 0

    # audited once per request, with the counts and the segment; no timeline row per customer
    rows = await audit_rows(kizuna, "tag.bulk_added") + await audit_rows(kizuna, "tag.bulk_removed")
    assert [(row.action, row.details["changed"]) for row in rows] == [
        ("tag.bulk_added", 4), ("tag.bulk_added", 0), ("tag.bulk_added", 1), ("tag.bulk_removed", 4), ("tag.bulk_removed", 0)]
    assert {row.target for row in rows} == {f"segment:{segment_id} 5,000円以上"}
    assert rows[0].details == {"tag": "上得意", "matched": 4, "changed": 4} and rows[0].actor == "token:tests"
    status, timeline = await kizuna.api("GET", f"/api/v1/customers/{member}/interactions")
    assert not [row for row in timeline["items"] if "tag" in row["kind"]]


async def test_bulk_skips_customers_at_the_tag_limit(kizuna):
    assert (await kizuna.api("POST", "/api/v1/orders", json={"orders": [an_order(n, 9000) for n in range(3)]}))[0] == 200
    segment_id = await _segment(kizuna, {"field": "monetary", "op": "gte", "value": 5000})
    full = (await kizuna.api("GET", f"/api/v1/segments/{segment_id}/customers"))[1]["items"][0]["id"]
    async with transaction(kizuna.sessions) as session:
        for n in range(tags.MAX_TAGS_PER_CUSTOMER):
            await tags.add(session, full, f"t{n}", actor=None)
    body = (await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "新", "action": "add"}))[1]
    assert (body["matched"], body["changed"]) == (3, 2)
    assert "新" not in (await kizuna.api("GET", f"/api/v1/customers/{full}/tags"))[1]["tags"]


async def test_bulk_refusals(kizuna):
    segment_id = await _segment(kizuna, {"field": "registered", "op": "eq", "value": True}, name="会員")
    for bad, field in (({"tag": "", "action": "add"}, "tag"), ({"tag": "x" * 41, "action": "add"}, "tag"),
                       ({"tag": "VIP", "action": "toggle"}, "action"), ({"tag": "VIP"}, "action"), ({"action": "add"}, "tag")):
        status, body = await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json=bad)
        assert status == 400 and body["error"]["field"] == field, (bad, body)
    status, body = await kizuna.api("POST", "/api/v1/segments/999/tags", json={"tag": "VIP", "action": "add"})
    assert status == 404, body
    async with transaction(kizuna.sessions) as session:
        _token, support = await tokens.create(session, name="support", role="support")
    status, body = await kizuna.api("POST", f"/api/v1/segments/{segment_id}/tags", json={"tag": "VIP", "action": "add"}, token=support)
    assert status == 403, body
    assert await audit_rows(kizuna, "tag.bulk_added") == []
