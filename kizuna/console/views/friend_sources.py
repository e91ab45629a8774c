"""流入経路 (friend-add sources; admins and marketers): create a source (a name, an optional tag),
see each one's link and QR code (shown inline, downloadable as PNG or SVG), its clicks, follows
and blocks, and archive it.

The rules are storage/friend_sources.py's (first source wins; follows and blocks counted from the
attributed customers); the link `/f/{code}` and the LINE Login behind it are bot/friend_links.py's.
QR codes are made by segno (pure Python, maintained, already the console's QR library for TOTP
and coupons) from our own URL only: a source's name never goes into an image or an SVG.
"""

from __future__ import annotations

import io

import segno
from aiohttp import web
from markupsafe import Markup

from kizuna.storage import friend_sources
from kizuna.storage.errors import Invalid, NotFound
from kizuna.storage.models import FRIEND_SOURCE_NAME_MAX, TAG_MAX

from ..context import CONTEXT, db, settings_of
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

ID = "{source_id:[0-9]{1,9}}"
NOTICES = ("created", "archived", "restored")


def link_of(request: web.Request, code: str) -> str:
    """The source's public link: under KIZUNA_PUBLIC_URL when set, else this server as the browser
    reached it - the same rule as the link's own LINE Login callback (bot/friend_links.py)."""
    public = getattr(settings_of(request), "public_url", None)
    return f"{public or request.url.origin()}/f/{code}"


def _qr(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def _list_url(request: web.Request, **query: str) -> str:
    url = request.app.router["friend_sources"].url_for()
    return str(url.with_query(query) if query else url)


async def _page(request: web.Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> web.Response:
    async with db(request) as session:
        rows = await friend_sources.stats(session)
    items = [{
        "stats": row, "url": link_of(request, row.source.code),
        # segno's SVG of our own URL: paths and numbers only, no text from anyone.
        "qr": Markup(_qr(link_of(request, row.source.code)).svg_inline(scale=3, border=2, dark="#111827", svgclass="qr", lineclass=None)),
    } for row in rows]
    notice = request.query.get("notice")
    return render(request, "friend_sources.html", {
        "active_items": [item for item in items if not item["stats"].source.archived],
        "archived_items": [item for item in items if item["stats"].source.archived],
        "form": form or {"name": "", "tag": ""}, "error": error,
        "notice": f"friend_sources.notice.{notice}" if notice in NOTICES else None,
        "name_max": FRIEND_SOURCE_NAME_MAX, "tag_max": TAG_MAX,
    }, status=status)


async def source_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def source_create(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    form = {key: str(posted.get(key, ""))[:300] for key in ("name", "tag")}
    try:
        async with db(request) as session:
            await friend_sources.create(session, form["name"], form["tag"] or None, actor=request[CONTEXT].actor())
    except Invalid as error:
        return await _page(request, form=form, error=f"friend_sources.invalid.{error.field}", status=400)
    return see_other(_list_url(request, notice="created"))


async def source_archive(request: web.Request) -> web.StreamResponse:
    archived = (await request.post()).get("archived") == "1"
    try:
        async with db(request) as session:
            await friend_sources.set_archived(session, int(request.match_info["source_id"]), archived, actor=request[CONTEXT].actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    return see_other(_list_url(request, notice="archived" if archived else "restored"))


async def source_qr(request: web.Request) -> web.StreamResponse:
    """The source's QR code as a file: PNG (print) or SVG (design tools)."""
    kind = request.match_info["kind"]
    try:
        async with db(request) as session:
            source = await friend_sources.get(session, int(request.match_info["source_id"]))
    except NotFound:
        raise Refused(404, "error.404") from None
    buffer = io.BytesIO()
    qr = _qr(link_of(request, source.code))
    if kind == "png":
        qr.save(buffer, kind="png", scale=10, border=4)
        content_type = "image/png"
    else:
        qr.save(buffer, kind="svg", scale=10, border=4, xmldecl=True)
        content_type = "image/svg+xml"
    return web.Response(body=buffer.getvalue(), content_type=content_type, headers={
        "Content-Disposition": f'attachment; filename="friend-source-{source.code}.{kind}"', "Cache-Control": "no-store",
    })


ROUTES = [
    route("GET", "/friend-sources", source_list, name="friend_sources", roles=MARKETING),
    route("POST", "/friend-sources", source_create, name="friend_source_create", roles=MARKETING),
    route("POST", f"/friend-sources/{ID}/archive", source_archive, name="friend_source_archive", roles=MARKETING),
    route("GET", f"/friend-sources/{ID}/qr.{{kind:png|svg}}", source_qr, name="friend_source_qr", roles=MARKETING),
]
