"""The REST API's permission matrix: every route of the running app's router × every role.

The matrix below is written out by hand, on purpose: it is what the shop is promised
(support never manages coupons, marketers never read support conversations, only admins
touch texts, settings and events, a till only redeems). A route served by the app but
missing here fails the test, so a new route cannot ship without a decision.
"""

from __future__ import annotations

import aiohttp

from kizuna.storage import tokens
from kizuna.storage.db import transaction
from kizuna.storage.roles import Role

A, M, S, P = Role.ADMIN, Role.MARKETER, Role.SUPPORT, Role.POS
MATRIX: dict[tuple[str, str], set[Role]] = {
    ("GET", "/customers"): {A, M, S},
    ("GET", "/customers/{id}"): {A, M, S},
    ("GET", "/customers/{id}/interactions"): {A, M, S},
    ("GET", "/customers/{id}/coupons"): {A, M, S},
    ("GET", "/conversations"): {A, S},
    ("GET", "/conversations/{id}"): {A, S},
    ("POST", "/conversations/{id}/assign"): {A, S},
    ("POST", "/conversations/{id}/messages"): {A, S},
    ("POST", "/conversations/{id}/notes"): {A, S},
    ("POST", "/conversations/{id}/resolve"): {A, S},
    ("GET", "/events"): {A},
    ("POST", "/events/{id}/retry"): {A},
    ("GET", "/texts"): {A},
    ("PUT", "/texts/{key}/{locale}"): {A},
    ("GET", "/inquiry-settings"): {A},
    ("PUT", "/inquiry-settings"): {A},
    ("POST", "/coupons"): {A, M},
    ("GET", "/coupons"): {A, M, S},
    ("GET", "/coupons/{id}"): {A, M, S},
    ("PATCH", "/coupons/{id}"): {A, M},
    ("POST", "/coupons/{id}/grants"): {A, M},
    ("POST", "/coupons/redeem"): {A, S, P},
    ("POST", "/coupons/grants/{id}/revoke"): {A},
    ("GET", "/faq"): {A, M, S},
    ("POST", "/faq"): {A, M},
    ("GET", "/faq/export"): {A, M, S},
    ("POST", "/faq/import"): {A, M},
    ("GET", "/faq/unanswered"): {A, M, S},
    ("GET", "/faq/{faq_id}"): {A, M, S},
    ("PUT", "/faq/{faq_id}"): {A, M},
    ("DELETE", "/faq/{faq_id}"): {A, M},
    ("GET", "/keyword-rules"): {A, M, S},
    ("POST", "/keyword-rules"): {A, M},
    ("GET", "/keyword-rules/{id}"): {A, M, S},
    ("PUT", "/keyword-rules/{id}"): {A, M},
    ("DELETE", "/keyword-rules/{id}"): {A, M},
    ("GET", "/business-hours"): {A, M, S},
    ("PUT", "/business-hours"): {A, M},
    ("POST", "/orders"): {A, M, P},
    ("POST", "/cart-events"): {A, M, P},
    ("POST", "/customers"): {A, M, P},
    ("GET", "/merge-candidates"): {A},
    ("GET", "/audit/reads"): {A},  # breach scoping: who read which customers
    ("POST", "/merge-candidates/{id}/merge"): {A},
    ("POST", "/merge-candidates/{id}/dismiss"): {A},
    ("POST", "/customer-merges/{id}/undo"): {A},
    ("POST", "/segments"): {A, M},
    ("GET", "/segments"): {A, M},
    ("POST", "/segments/preview"): {A, M},
    ("GET", "/segments/presets"): {A, M},
    ("GET", "/segments/{id}/customers"): {A, M},
    ("POST", "/campaigns"): {A, M},
    ("GET", "/campaigns"): {A, M},
    ("GET", "/campaigns/{id}"): {A, M},
    ("POST", "/campaigns/{id}/schedule"): {A, M},
    ("POST", "/campaigns/{id}/test"): {A, M},
    ("POST", "/campaigns/{id}/pause"): {A, M},
    ("POST", "/campaigns/{id}/resume"): {A, M},
    ("POST", "/campaigns/{id}/cancel"): {A, M},
    ("GET", "/metric-settings"): {A, M},
    ("PUT", "/metric-settings"): {A},
    ("GET", "/segments/{id}/export.csv"): {A, M},
    ("GET", "/customers/{id}/tags"): {A, M, S},
    ("POST", "/customers/{id}/tags"): {A, M, S},
    ("DELETE", "/customers/{id}/tags/{tag}"): {A, M, S},
    ("GET", "/tags"): {A, M, S},
    ("POST", "/segments/{id}/tags"): {A, M},
    ("GET", "/friend-sources"): {A, M},
    ("POST", "/friend-sources"): {A, M},
    ("POST", "/sequences"): {A, M},
    ("GET", "/sequences"): {A, M},
    ("GET", "/sequences/{id}"): {A, M},
    ("PUT", "/sequences/{id}"): {A, M},
    ("POST", "/sequences/{id}/pause"): {A, M},
    ("POST", "/sequences/{id}/resume"): {A, M},
    ("POST", "/events"): {A, M, P},
    ("POST", "/automations"): {A, M},
    ("GET", "/automations"): {A, M},
    ("GET", "/automations/{id}"): {A, M},
    ("PUT", "/automations/{id}"): {A, M},
    ("DELETE", "/automations/{id}"): {A, M},
    ("POST", "/automations/{id}/enable"): {A, M},
    ("POST", "/automations/{id}/disable"): {A, M},
    ("GET", "/automations/{id}/firings"): {A, M},
    ("GET", "/automation-firings"): {A, M},
    ("GET", "/automation-settings"): {A, M},
    ("PUT", "/automation-settings"): {A, M},
    ("GET", "/privacy-notices"): {A, M, S},
    ("POST", "/privacy-notices"): {A},
    ("GET", "/customers/{id}/consents"): {A, M, S},
    # data-subject requests and provision records (api/data_requests.py): admins only
    ("GET", "/customers/{id}/export"): {A},
    ("POST", "/customers/{id}/erase"): {A},
    ("POST", "/customers/{id}/stop"): {A},
    ("POST", "/customers/{id}/resume"): {A},
    ("POST", "/customers/{id}/correct"): {A},
    ("GET", "/data-requests"): {A},
    ("GET", "/data-requests/{id}"): {A},
    ("GET", "/provision-records"): {A},
}
SAMPLE = {"{id}": "1", "{faq_id}": "shipping", "{key}": "greeting", "{locale}": "ja", "{tag}": "VIP"}


def _served_routes(app) -> set[tuple[str, str]]:
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json" and route.method != "HEAD":
            served.add((route.method, path.removeprefix("/api/v1")))
    return served


async def test_every_api_route_is_in_the_matrix(kizuna):
    served = _served_routes(kizuna.server.app)
    assert served - MATRIX.keys() == set(), "routes with no decision in the permission matrix"
    assert MATRIX.keys() - served == set(), "the matrix names routes the app does not serve"


async def test_every_role_gets_exactly_what_the_matrix_promises(kizuna):
    plain = {}
    async with transaction(kizuna.sessions) as session:
        for role in Role:
            _token, plain[role] = await tokens.create(session, name=f"matrix-{role}", role=role)
    wrong = []
    async with aiohttp.ClientSession() as client:
        for (method, path), allowed in sorted(MATRIX.items()):
            url = kizuna.url + "/api/v1" + path
            for placeholder, value in SAMPLE.items():
                url = url.replace(placeholder, value)
            async with client.request(method, url) as response:
                if response.status != 401:
                    wrong.append((method, path, "no token", response.status))
            for role in Role:
                headers = {"Authorization": f"Bearer {plain[role]}"}
                # An empty JSON object: an allowed role gets past the check (then 2xx, 400, 404 ...).
                async with client.request(method, url, headers=headers, json={}) as response:
                    refused = response.status == 403
                if refused == (role in allowed):
                    wrong.append((method, path, str(role), response.status))
    assert wrong == [], wrong
