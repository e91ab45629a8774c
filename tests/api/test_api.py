"""The REST API: tokens and roles, paging, errors, OpenAPI, health."""

from __future__ import annotations

import subprocess
import sys

import aiohttp

from kizuna.storage import tokens
from kizuna.storage.db import transaction
from tests.conftest import SECRET_KEY


async def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as response:
        return response.status, await response.json()


async def _token(kizuna, role: str) -> str:
    async with transaction(kizuna.sessions) as session:
        return (await tokens.create(session, name=f"{role} token", role=role))[1]


async def test_tokens_are_required_and_roles_enforced(kizuna):
    url = kizuna.url + "/api/v1/customers"
    assert (await _get(url))[0] == 401
    status, body = await _get(url, "kzn_not-a-token")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await _get(url, await _token(kizuna, "support")))[0] == 200
    status, body = await _get(kizuna.url + "/api/v1/events", await _token(kizuna, "support"))
    assert status == 403 and "support" in body["error"]["message"]
    assert (await _get(url, await _token(kizuna, "pos")))[0] == 403


async def test_customers_paging_and_timeline_newest_first(kizuna):
    users = [kizuna.emulator.add_user(display_name=f"客{i}") for i in range(3)]
    for user in users:
        await kizuna.emulator.follow(user.user_id)
        await kizuna.emulator.send_text(user.user_id, "こんにちは")
    for user in users:
        await kizuna.emulator.wait_for_messages(user.user_id, 2)

    status, first = await kizuna.api("GET", "/api/v1/customers?limit=2")
    assert status == 200 and len(first["items"]) == 2 and first["next_after"] is not None
    _, rest = await kizuna.api("GET", f"/api/v1/customers?limit=2&after={first['next_after']}")
    names = [item["display_name"] for item in first["items"] + rest["items"]]
    assert sorted(names) == ["客0", "客1", "客2"]  # each once, across pages

    customer_id = first["items"][0]["id"]
    _, page1 = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/interactions?limit=3")
    _, page2 = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/interactions?limit=3&before={page1['next_before']}")
    ids = [item["id"] for item in page1["items"] + page2["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    assert [item["kind"] for item in reversed(page1["items"] + page2["items"])] == ["follow", "message.text", "message.text", "message.text"]


async def test_bad_parameters_and_unknown_ids_are_clear_errors(kizuna):
    for path, status in (("/api/v1/customers?limit=0", 400), ("/api/v1/customers?limit=abc", 400), ("/api/v1/customers/999", 404),
                         ("/api/v1/customers/abc", 404), ("/api/v1/customers/999/interactions", 404), ("/api/v1/events?status=nope", 400)):
        got, body = await kizuna.api("GET", path)
        assert got == status, path
        assert body["error"]["message"]


async def test_bot_texts_are_editable(kizuna):
    status, body = await kizuna.api("PUT", "/api/v1/texts/greeting/ja", json={"text": "ようこそ、絆ショップへ!"})
    assert status == 200 and body["edited"] is True
    user = kizuna.emulator.add_user(display_name="テスト")
    await kizuna.emulator.follow(user.user_id)
    [greeting, *_] = await kizuna.emulator.wait_for_messages(user.user_id, 1)
    assert greeting.message["text"] == "ようこそ、絆ショップへ!"
    assert (await kizuna.api("PUT", "/api/v1/texts/greeting/ja", json={"text": ""}))[0] == 400
    assert (await kizuna.api("PUT", "/api/v1/texts/nope/ja", json={"text": "x"}))[0] == 404
    assert (await kizuna.api("PUT", "/api/v1/texts/greeting/ja", data=b"{oops", headers={"Content-Type": "application/json"}))[0] == 400


async def test_openapi_document_lists_every_route(kizuna):
    status, document = await _get(kizuna.url + "/api/v1/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    for path in ("/api/v1/customers", "/api/v1/customers/{id}", "/api/v1/customers/{id}/interactions", "/api/v1/events"):
        assert path in document["paths"], path
    customer = document["components"]["schemas"]["CustomerRead"]
    assert "line_user_id" in customer["properties"]


async def test_healthz_checks_the_backends(kizuna):
    status, body = await _get(kizuna.url + "/healthz")
    assert status == 200 and body["database"] == "ok"
    assert body["redis"] == ("ok" if kizuna.settings.redis_url else "not configured")


def test_token_create_prints_the_token_on_its_last_line(database_url, tmp_path):
    env = {"KIZUNA_SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "kizuna.bot.cli", "token", "create", "--name", "POS レジ1", "--role", "pos"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("kzn_") and len(token) > 40
    refused = subprocess.run([sys.executable, "-m", "kizuna.bot.cli", "token", "create", "--name", "x", "--role", "root"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "role" in refused.stderr
    unnamed = subprocess.run([sys.executable, "-m", "kizuna.bot.cli", "token", "create", "--name", "  ", "--role", "pos"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert unnamed.returncode == 2 and "name" in unnamed.stderr and "Traceback" not in unnamed.stderr
