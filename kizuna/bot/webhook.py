"""POST /callback: LINE's webhook, as DESIGN.md's inbound steps 1-3.

1. Verify X-Line-Signature on the raw body before parsing (constant-time compare).
2. Read the body (webhook_validation): 400 only when it is not a LINE webhook at all;
   each event is checked on its own, and an invalid one is stored parked with the reason.
3. Store every event in one transaction, unique on webhookEventId in the database.
4. Answer 200, then hand the sources to the queue. No business logic here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from aiohttp import web

from kizuna.storage import events
from kizuna.storage.types import utcnow

from . import webhook_validation
from .ingest import StorageUnavailable
from .keys import INGEST, SETTINGS

log = logging.getLogger("kizuna.webhook")

routes = web.RouteTableDef()


def signature_for(channel_secret: str, body: bytes) -> str:
    digest = hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@routes.post("/callback")
async def callback(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return _error(413, "request body too large")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "request body too large")

    # Header names are case-insensitive (aiohttp's headers are a CIMultiDict).
    signature = request.headers.get("x-line-signature")
    if not signature:
        log.warning("webhook without x-line-signature from %s rejected", request.remote)
        return _error(400, "missing x-line-signature")
    expected = signature_for(settings.line_channel_secret, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        # Never log the body: it is unauthenticated input.
        log.warning("webhook with a bad signature from %s rejected (%d bytes)", request.remote, len(body))
        return _error(401, "invalid signature")

    try:
        inbound = webhook_validation.read_events(body)
    except webhook_validation.NotAWebhook as error:
        return _error(400, str(error))
    if inbound:
        received_at = utcnow()
        rows = [events.event_row(**event._asdict(), received_at=received_at) for event in inbound]
        # Committed (with other requests' rows, in one transaction) before the 200; queued for
        # the workers right after, beside the next batch.
        try:
            await request.app[INGEST].store(rows)
        except StorageUnavailable:
            # Nothing was stored: LINE redelivers after a non-2xx answer.
            return _error(503, "temporarily unable to store events; try again")
        for event in inbound:
            if event.parked_reason is not None:
                log.warning("webhook event %s parked: %s", event.webhook_event_id, event.parked_reason)
    return _ok()


def _ok() -> web.Response:
    # What web.json_response({}) answers, without encoding `{}` on every request.
    return web.Response(body=b"{}", content_type="application/json", charset="utf-8")
