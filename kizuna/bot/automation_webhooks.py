"""Posting automation rules' webhook calls (`automation_webhook_calls`) to the shop's endpoint.

Each call was stored with its firing (campaigns/automations.py); a worker claims it (one
conditional UPDATE: one worker of N), posts the stored body with

    X-Kizuna-Signature: sha256=<hex HMAC-SHA256 of the body with the rule's secret>
    X-Kizuna-Delivery: <the call's idempotency key, derived from the firing>

and records the attempt. 2xx: sent. 5xx, 408, 429, a timeout or a connection error: tried again
with exponential backoff, up to MAX_ATTEMPTS. Any other answer, and any redirect, fail it: a
redirect is never followed (it could lead to another host). A worker that dies mid-post leaves
the call claimed; after CLAIM_TIMEOUT another posts it again with the same delivery key, which
is what the shop's endpoint de-duplicates on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.campaigns.automations import check_webhook_url
from kizuna.storage import automations as store
from kizuna.storage.db import transaction
from kizuna.storage.models import AutomationRule, WebhookCallStatus

log = logging.getLogger("kizuna.automation_webhooks")

SIGNATURE_HEADER = "X-Kizuna-Signature"
DELIVERY_HEADER = "X-Kizuna-Delivery"
TIMEOUT = 10.0  # seconds for one post
MAX_ATTEMPTS = 8
BACKOFF_FIRST = timedelta(seconds=5)  # then doubled each attempt: 5 s, 10 s, 20 s … about 10 min in all
CLAIM_TIMEOUT = timedelta(seconds=60)  # longer than a post can take
RETRIED = {408, 429}


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> timedelta:
    return BACKOFF_FIRST * (2 ** max(attempts - 1, 0))


class WebhookPoster:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime], allow_http_localhost: bool) -> None:
        self.sessions = sessions
        self.clock = clock
        self.allow_http_localhost = allow_http_localhost

    async def post_due(self) -> int:
        """Post every due call (new ones, retries, and those a dead worker left claimed)."""
        async with self.sessions() as session:
            due = await store.due_calls(session, now=self.clock(), claim_timeout=CLAIM_TIMEOUT)
        for call_id in due:
            await self.post(call_id)
        return len(due)

    async def post(self, call_id: int) -> WebhookCallStatus | None:
        """Claim and post one call; its new status (None: not ours to post)."""
        async with transaction(self.sessions) as session:
            call = await store.claim_call(session, call_id, now=self.clock(), claim_timeout=CLAIM_TIMEOUT)
            if call is None:
                return None
            rule = await session.get(AutomationRule, call.rule_id)
            url, body, attempts, secret = call.url, call.body.encode(), call.attempts, rule.webhook_secret if rule else ""
        status, code, error = await self._send(url, body, secret, key=call.idempotency_key)
        retry_at = None
        if status == WebhookCallStatus.PENDING:
            if attempts >= MAX_ATTEMPTS:
                status, error = WebhookCallStatus.FAILED, f"gave up after {attempts} attempts: {error}"
            else:
                retry_at = self.clock() + backoff(attempts)
        async with transaction(self.sessions) as session:
            await store.finish_call(session, call_id, status=status, code=code, error=error, now=self.clock(), retry_at=retry_at)
        if status == WebhookCallStatus.FAILED:
            log.warning("automation webhook call %s failed: %s", call_id, error)
        return status

    async def _send(self, url: str, body: bytes, secret: str, *, key: str) -> tuple[WebhookCallStatus, int | None, str | None]:
        try:
            check_webhook_url(url, allow_http_localhost=self.allow_http_localhost)
        except ValueError as error:
            return WebhookCallStatus.FAILED, None, str(error)
        headers = {"Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: signature(secret, body),
                   DELIVERY_HEADER: key, "User-Agent": "kizuna-automations"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as client, \
                    client.post(url, data=body, headers=headers, allow_redirects=False) as response:
                code = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            return WebhookCallStatus.PENDING, None, f"{type(error).__name__}: {error}"[:500]
        if 200 <= code < 300:
            return WebhookCallStatus.SENT, code, None
        if 300 <= code < 400:
            return WebhookCallStatus.FAILED, code, "redirect not followed"
        if code >= 500 or code in RETRIED:
            return WebhookCallStatus.PENDING, code, f"HTTP {code}"
        return WebhookCallStatus.FAILED, code, f"HTTP {code}"
