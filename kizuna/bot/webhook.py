"""POST /callback: LINE's webhook, as DESIGN.md's inbound steps 1-3.

1. Verify X-Line-Signature on the raw body before parsing (constant-time compare).
2. Store every event in one transaction, unique on webhookEventId in the database.
3. Answer 200, then hand the sources to the queue. No business logic here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

from aiohttp import web

from kizuna.storage import events
from kizuna.storage.types import utcnow

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
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "body is not valid JSON")
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        return _error(400, "body must be an object with an events array")
    if not all(isinstance(event, dict) for event in document["events"]):
        return _error(400, "every event must be an object")

    received_at = utcnow()
    rows = [events.event_row(event, received_at) for event in document["events"]]
    if rows:
        # Committed (with other requests' rows, in one transaction) and queued before 200.
        try:
            await request.app[INGEST].store(rows)
        except StorageUnavailable:
            # Nothing was stored: LINE redelivers after a non-2xx answer.
            return _error(503, "temporarily unable to store events; try again")
    return web.json_response({})
