"""`GET /r/{token}`: a campaign's tracked link (campaigns/links.py). Records the tap on the
customer's timeline and redirects (302) to the destination stored with the campaign, never to
anything the URL says; an unknown, altered or forged token gets a 404 page and records nothing."""

from __future__ import annotations

from aiohttp import web

from kizuna.appkeys import SERVICES
from kizuna.campaigns import links
from kizuna.storage import campaign_batches
from kizuna.storage.db import transaction

from .friend_links import message_page
from .keys import SESSIONS, SETTINGS


async def follow_link(request: web.Request) -> web.StreamResponse:
    tap = links.read(request.app[SETTINGS].secret_key, request.match_info["token"])
    destination = None
    if tap is not None:
        async with transaction(request.app[SESSIONS]) as session:
            destination = await campaign_batches.record_click(
                session, campaign_id=tap.campaign_id, variant_id=tap.variant_id, customer_id=tap.customer_id, link=tap.link,
                now=request.app[SERVICES].clock())
    if destination is None:
        return message_page("リンクが見つかりません", "このリンクは無効です。お手数ですが、お店のLINEアカウントからもう一度お試しください。", 404)
    # No caching: every tap goes through us and is counted.
    raise web.HTTPFound(destination, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


routes = [web.get("/r/{token}", follow_link)]
