"""APIトークン over real HTTP: an admin creates a token (shown once, on the answer page only),
the REST API accepts it, revoking it makes the next request 401; both are audited; a name
that is markup is shown as text; a bad form changes nothing."""

from __future__ import annotations

import html
import re

import aiohttp
import sqlalchemy as sa

from kizuna.storage.models import ApiToken

NEW_TOKEN = re.compile(r'<code id="new-token" class="secret">(kzn_[A-Za-z0-9_-]+)</code>')


async def api_status(console, token: str) -> int:
    async with aiohttp.ClientSession() as client:
        async with client.get(console.url + "/api/v1/customers", headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status


async def stored(console) -> list[ApiToken]:
    async with console.sessions() as session:
        return list((await session.execute(sa.select(ApiToken).order_by(ApiToken.id))).scalars())


async def test_an_admin_creates_a_token_the_api_takes_it_and_revoking_ends_it(console):
    browser = await console.admin()
    before = await stored(console)

    response, page = await browser.get("/console/api-tokens")
    assert response.status == 200 and "APIトークンを発行" in page

    response, page = await browser.post("/console/api-tokens", {"name": "<b>POSレジ</b>", "role": "admin"})
    assert response.status == 200
    [plain] = NEW_TOKEN.findall(page)
    assert "今だけ表示されます" in page and html.escape("<b>POSレジ</b>") in page and "<b>POSレジ</b>" not in page
    assert await api_status(console, plain) == 200

    # shown once: the list shows only its first characters
    response, page = await browser.get("/console/api-tokens")
    assert plain not in page and plain[:10] in page
    [created] = [token for token in await stored(console) if token not in before]
    assert (created.name, created.role, created.revoked_at) == ("<b>POSレジ</b>", "admin", None)
    assert created.last_used_at is not None  # the API request above

    response, _ = await browser.post(f"/console/api-tokens/{created.id}/revoke")
    assert response.status == 303 and response.headers["Location"] == "/console/api-tokens?notice=token_revoked"
    assert await api_status(console, plain) == 401
    response, page = await browser.get("/console/api-tokens?notice=token_revoked")
    assert "APIトークンを無効にしました。" in page and "無効" in page

    response, _ = await browser.post(f"/console/api-tokens/{created.id}/revoke")  # twice: told, nothing changes
    assert response.headers["Location"] == "/console/api-tokens?error=already_revoked"
    response, _ = await browser.post("/console/api-tokens/999999/revoke")
    assert response.status == 404

    [made] = await console.audit("api_token.created")
    [revoked] = await console.audit("api_token.revoked")
    assert (made.actor, made.target, made.details) == ("admin@example.com", f"api_token:{created.id}", {"name": "<b>POSレジ</b>", "role": "admin"})
    assert (revoked.actor, revoked.target) == ("admin@example.com", f"api_token:{created.id}")


async def test_a_bad_token_form_is_refused_beside_the_field_and_stores_nothing(console):
    browser = await console.admin()
    before = await stored(console)
    for form, message in (
        ({"name": "  ", "role": "pos"}, "名前を100文字以内で入力してください。"),
        ({"name": "x" * 101, "role": "pos"}, "名前を100文字以内で入力してください。"),
        ({"name": "POS", "role": "owner"}, "権限を選んでください。"),
        ({"name": "POS", "role": ""}, "権限を選んでください。"),
    ):
        response, page = await browser.post("/console/api-tokens", form)
        assert response.status == 400 and message in page, form
        assert NEW_TOKEN.search(page) is None
    assert await stored(console) == before
    assert await console.audit("api_token.created") == []
