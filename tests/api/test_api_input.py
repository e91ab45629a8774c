"""What production sends the REST API that it did not expect (issue 12): ids beyond what a column
holds, NUL and lone surrogates, bodies nested deep or too large, methods a path does not have.
Each is a 4xx in the API's error shape, never a 500, and the OpenAPI document says so."""

from __future__ import annotations

import json

import aiohttp

from kizuna.api import openapi_document
from kizuna.api.http import INT4_MAX, INT8_MAX
from kizuna.storage import customers
from kizuna.storage.db import transaction

RULE = {"match_type": "contains", "pattern": "営業時間", "reply_text": "10時から19時です。"}


async def send(kizuna, method: str, path: str, *, body: bytes | None = None) -> tuple[int, dict, dict]:
    """A raw request (the body as given, not re-encoded): status, JSON answer, headers."""
    headers = {"Authorization": f"Bearer {kizuna.admin_token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as client:
        async with client.request(method, kizuna.url + path, data=body, headers=headers) as response:
            return response.status, await response.json(), dict(response.headers)


async def send_body(kizuna, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    status, answer, _ = await send(kizuna, method, path, body=body)
    return status, answer


def assert_error(status: int, body: dict, expected_status: int, code: str, field: str | None = None) -> None:
    assert status == expected_status, body
    assert body["error"]["code"] == code and body["error"]["message"], body
    if field is not None:
        assert body["error"]["field"] == field, body


# -- ids and integers: bounded by their column ------------------------------------------------


async def test_path_ids_beyond_their_column_are_not_found(kizuna):
    rule = (await kizuna.api("POST", "/api/v1/keyword-rules", json=RULE))[1]
    # customers, coupons and keyword_rules have int4 ids on PostgreSQL; events and grants int8.
    for path in (f"/api/v1/customers/{INT4_MAX + 1}", f"/api/v1/customers/{INT4_MAX + 1}/interactions",
                 f"/api/v1/customers/{INT4_MAX + 1}/coupons", f"/api/v1/coupons/{INT8_MAX + 1}",
                 f"/api/v1/coupons/{INT4_MAX}", "/api/v1/customers/" + "9" * 5000, "/api/v1/customers/0"):
        assert_error(*(await kizuna.api("GET", path)), 404, "not_found")
    for method, body in (("GET", None), ("PUT", {"pattern": "x"}), ("DELETE", None)):
        assert_error(*(await kizuna.api(method, "/api/v1/keyword-rules/17179869185", json=body)), 404, "not_found")
    assert_error(*(await kizuna.api("POST", f"/api/v1/events/{INT8_MAX}/retry")), 404, "not_found")
    assert_error(*(await kizuna.api("POST", f"/api/v1/events/{INT8_MAX + 1}/retry")), 404, "not_found")
    assert_error(*(await kizuna.api("POST", f"/api/v1/coupons/grants/{INT8_MAX + 1}/revoke")), 404, "not_found")
    assert (await kizuna.api("GET", f"/api/v1/keyword-rules/{rule['id']}"))[0] == 200


async def test_query_integers_beyond_their_column_name_the_parameter(kizuna):
    async with transaction(kizuna.sessions) as session:
        customer, _ = await customers.get_or_create(session, "U" + "1" * 32, None)
    for path, field in (("/api/v1/customers?after=3000000000", "after"), (f"/api/v1/customers?after={INT4_MAX + 1}", "after"),
                        (f"/api/v1/coupons?before={INT4_MAX + 1}", "before"), (f"/api/v1/events?before={INT8_MAX + 1}", "before"),
                        ("/api/v1/customers?after=-1", "after"), ("/api/v1/customers?limit=201", "limit"),
                        ("/api/v1/customers?after=1.5", "after"), ("/api/v1/customers?limit=", "limit"),
                        ("/api/v1/customers?limit=5&limit=6", "limit"), ("/api/v1/coupons?active=maybe", "active")):
        assert_error(*(await kizuna.api("GET", path)), 400, "invalid_field", field)
    assert (await kizuna.api("GET", f"/api/v1/customers?after={INT4_MAX}"))[1]["items"] == []
    status, page = await kizuna.api("GET", f"/api/v1/customers/{customer.id}/interactions?before={INT8_MAX}")
    assert status == 200 and page["items"] == []
    assert (await kizuna.api("GET", f"/api/v1/customers/{customer.id}/coupons?before={INT8_MAX}"))[0] == 200


def test_the_document_gives_each_integer_its_bounds():
    paths = openapi_document()["paths"]
    assert paths["/api/v1/customers/{id}"]["get"]["parameters"][0]["schema"] == {"type": "integer", "minimum": 1, "maximum": INT4_MAX}
    revoke = paths["/api/v1/coupons/grants/{id}/revoke"]["post"]["parameters"][0]["schema"]
    assert revoke["maximum"] == INT8_MAX
    after = next(p for p in paths["/api/v1/customers"]["get"]["parameters"] if p["name"] == "after")
    assert after["schema"] == {"type": "integer", "minimum": 0, "maximum": INT4_MAX}
    for path, methods in paths.items():
        for operation in methods.values():
            for param in operation["parameters"]:
                if param["schema"]["type"] == "integer":
                    assert {"minimum", "maximum"} <= set(param["schema"]), (path, param)


# -- text: NUL and lone surrogates ------------------------------------------------------------


async def test_nul_and_lone_surrogates_are_refused_naming_the_field(kizuna):
    assert_error(*(await kizuna.api("GET", "/api/v1/customers?line_user_id=%00")), 400, "invalid_field", "line_user_id")
    assert_error(*(await kizuna.api("GET", "/api/v1/faq?category=a%00b")), 400, "invalid_field", "category")
    assert_error(*(await kizuna.api("GET", "/api/v1/faq/a%00")), 400, "invalid_field", "faq_id")
    assert_error(*(await kizuna.api("PUT", "/api/v1/texts/greeting%00/ja", json={"text": "x"})), 400, "invalid_field", "key")

    hours = {"weekly": None, "holidays": ["2026-12-31", "\udc00"]}  # json.dumps writes it as \\udc00
    assert_error(*(await kizuna.api("PUT", "/api/v1/business-hours", json=hours)), 400, "invalid_field", "holidays[1]")
    hours = {"weekly": {"mon": [["10:00", "20:00\x00"]]}}
    assert_error(*(await kizuna.api("PUT", "/api/v1/business-hours", json=hours)), 400, "invalid_field", "weekly.mon[0][1]")
    entry = {"id": "gift", "question": "ギフト包装は?", "answer": "できます。", "alternates": ["ok", "bad\ud83d"]}
    assert_error(*(await kizuna.api("POST", "/api/v1/faq", json=entry)), 400, "invalid_field", "alternates[1]")
    assert_error(*(await kizuna.api("PUT", "/api/v1/texts/greeting/ja", json={"text\x00": "x"})), 400, "invalid_field", "body")
    # a pair is one character, not two halves
    status, changed = await kizuna.api("PUT", "/api/v1/texts/greeting/ja", json={"text": "ようこそ\ud83d\ude00"})
    assert status == 200 and changed["text"] == "ようこそ😀"
    assert (await kizuna.api("GET", "/api/v1/business-hours"))[1]["holidays"] == []  # nothing was stored


async def test_holidays_are_checked_when_the_schedule_is_cleared(kizuna):
    hours = {"weekly": None, "holidays": ["someday"]}
    assert_error(*(await kizuna.api("PUT", "/api/v1/business-hours", json=hours)), 400, "invalid_field", "holidays")
    status, body = await kizuna.api("PUT", "/api/v1/business-hours", json={"weekly": None, "holidays": ["2026-12-31"]})
    assert status == 200 and body["holidays"] == ["2026-12-31"] and body["configured"] is False


async def test_bodies_nested_deep_broken_or_too_large_are_4xx(kizuna):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_error(*(await send_body(kizuna, "PUT", "/api/v1/business-hours", deep)), 400, "invalid_json")
    nested = b'{"weekly": ' + b'{"mon": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"
    assert_error(*(await send_body(kizuna, "PUT", "/api/v1/business-hours", nested)), 400, "invalid_json")
    assert_error(*(await send_body(kizuna, "PUT", "/api/v1/texts/greeting/ja", b'{"text": "\xff"}')), 400, "invalid_json")
    assert_error(*(await send_body(kizuna, "PUT", "/api/v1/texts/greeting/ja", b'["text"]')), 400, "invalid_body")
    big = json.dumps({"text": "あ" * (kizuna.settings.max_body_bytes // 3 + 1)}).encode()
    assert_error(*(await send_body(kizuna, "PUT", "/api/v1/texts/greeting/ja", big)), 413, "body_too_large")
    wrong = json.dumps({"text": [[[["x"]]]]}).encode()
    assert_error(*(await send_body(kizuna, "PUT", "/api/v1/texts/greeting/ja", wrong)), 400, "invalid_field", "text")


# -- the document tells the truth: nulls, statuses, Allow ---------------------------------------


async def test_keyword_rule_change_takes_the_nulls_its_schema_allows(kizuna):
    rule = (await kizuna.api("POST", "/api/v1/keyword-rules", json={**RULE, "name": "営業時間"}))[1]
    schema = openapi_document()["components"]["schemas"]["KeywordRuleChange"]["properties"]
    nullable = {name for name, spec in schema.items() if {"type": "null"} in spec.get("anyOf", [])}
    assert nullable == {"name", "reply_text", "flow_action", "add_tag"}
    status, changed = await kizuna.api("PUT", f"/api/v1/keyword-rules/{rule['id']}",
                                       json={"name": None, "reply_text": None, "flow_action": "register", "add_tag": None})
    assert status == 200, changed
    assert (changed["name"], changed["reply_text"], changed["flow_action"], changed["add_tag"]) == (None, None, "register", None)
    for name in ("match_type", "pattern", "priority", "enabled"):  # not nullable in the schema, nor on the server
        assert_error(*(await kizuna.api("PUT", f"/api/v1/keyword-rules/{rule['id']}", json={name: None})),
                     400, "invalid_field", name)


async def test_statuses_a_route_answers_are_documented(kizuna):
    paths = openapi_document()["paths"]
    entry = {"id": "gift", "question": "ギフト包装は?", "answer": "できます。"}
    assert (await kizuna.api("POST", "/api/v1/faq", json=entry))[0] == 201
    assert_error(*(await kizuna.api("POST", "/api/v1/faq", json=entry)), 409, "exists")
    assert {"201", "409", "413"} <= set(paths["/api/v1/faq"]["post"]["responses"])
    assert "200" not in paths["/api/v1/faq"]["post"]["responses"]
    assert set(paths["/api/v1/coupons/redeem"]["post"]["responses"]) == {"200", "400", "401", "403", "404", "409", "410", "413", "422"}
    assert set(paths["/api/v1/coupons/{id}/grants"]["post"]["responses"]) >= {"200", "201", "409"}
    # nothing to be invalid, nobody else to refuse: no 400, no 403, no 404
    assert set(paths["/api/v1/keyword-rules"]["get"]["responses"]) == {"200", "401", "403"}
    assert set(paths["/api/v1/customers/{id}"]["get"]["responses"]) == {"200", "401", "403", "404"}
    assert paths["/api/v1/faq/export"]["get"]["responses"]["200"]["content"] == {"text/csv": {"schema": {"type": "string"}}}


async def test_405_allows_exactly_the_methods_of_the_path(kizuna):
    for method, path, allowed in (("PUT", "/api/v1/faq/export", "GET"), ("GET", "/api/v1/faq/import", "POST"),
                                  ("PATCH", "/api/v1/coupons/redeem", "POST"), ("DELETE", "/api/v1/customers/1", "GET"),
                                  ("OPTIONS", "/api/v1/faq/unanswered", "GET"),
                                  ("POST", "/api/v1/keyword-rules/1", "DELETE,GET,PUT")):
        status, body, headers = await send(kizuna, method, path)
        assert_error(status, body, 405, "method_not_allowed")
        assert headers["Allow"] == allowed, (method, path)
    documented = openapi_document()["paths"]["/api/v1/keyword-rules/{id}"]
    assert sorted(method.upper() for method in documented) == ["DELETE", "GET", "PUT"]
    # an FAQ entry may still be called "exports"; /faq/export itself is the CSV
    assert_error(*(await send_body(kizuna, "GET", "/api/v1/faq/exports")), 404, "not_found")
    assert_error(*(await send_body(kizuna, "GET", "/api/v1/nothing-here")), 404, "not_found")
