"""スタッフ管理 (admins only): the list, adding an account (its first password is generated
and shown once), and per account: role, sessions, password, two-factor reset, disabling."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import staff as staff_store
from kizuna.storage import staff_sessions
from kizuna.storage.roles import STAFF_ROLES

from .. import config
from ..context import CONTEXT, db
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

NOTICES = ("role_changed", "disabled", "enabled", "sessions_ended", "totp_reset", "unchanged")
ERRORS = ("last_admin", "cannot_disable_self", "role_invalid")
ID = "{staff_id:[0-9]{1,9}}"


def _staff_id(request: web.Request) -> int:
    return int(request.match_info["staff_id"])


def _detail_url(request: web.Request, staff_id: int, **query: str) -> str:
    url = request.app.router["staff_detail"].url_for(staff_id=str(staff_id))
    return str(url.with_query(query) if query else url)


async def _list_page(request: web.Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    async with db(request) as session:
        members = await staff_store.list_all(session)
        live = await staff_sessions.live_counts(session, timeouts=config.timeouts(ctx.settings), now=ctx.now)
    return render(request, "staff_list.html", {
        "members": members, "live": live, "roles": [str(role) for role in STAFF_ROLES],
        "form": form or {"display_name": "", "email": "", "role": "support"}, "error": error,
    }, status=status)


async def staff_list(request: web.Request) -> web.StreamResponse:
    return await _list_page(request)


async def staff_create(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    posted = await request.post()
    form = {key: str(posted.get(key, ""))[:300] for key in ("display_name", "email", "role")}
    password = staff_store.generate_password()
    try:
        new = await staff_store.prepare(email=form["email"], display_name=form["display_name"], role=form["role"], password=password)
        async with db(request) as session:
            member = await staff_store.create(session, new, actor=ctx.actor())
    except staff_store.StaffInvalid as invalid:
        return await _list_page(request, form=form, error=f"error.{invalid.code}", status=400)
    return render(request, "staff_password.html", {"member": member, "password": password, "created": True})


async def _member(session, request: web.Request):
    member = await staff_store.get(session, _staff_id(request))
    if member is None:
        raise Refused(404, "error.404")
    return member


async def staff_detail(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    async with db(request) as session:
        member = await _member(session, request)
        live = await staff_sessions.live_of(session, member.id, timeouts=config.timeouts(ctx.settings), now=ctx.now)
    notice = request.query.get("notice")
    error = request.query.get("error")
    return render(request, "staff_detail.html", {
        "member": member, "sessions": live, "roles": [str(role) for role in STAFF_ROLES],
        "notice": f"notice.{notice}" if notice in NOTICES else None,
        "error": f"error.{error}" if error in ERRORS else None,
    })


async def _change(request: web.Request, change) -> web.StreamResponse:
    """Run `change(session, member, ctx)` → notice key; a refused change comes back as an error."""
    ctx = request[CONTEXT]
    staff_id = _staff_id(request)
    try:
        async with db(request) as session:
            member = await _member(session, request)
            notice = await change(session, member, ctx)
    except staff_store.StaffInvalid as invalid:
        return see_other(_detail_url(request, staff_id, error=invalid.code))
    return see_other(_detail_url(request, staff_id, notice=notice))


async def staff_role(request: web.Request) -> web.StreamResponse:
    role = str((await request.post()).get("role", ""))

    async def change(session, member, ctx):
        return "role_changed" if await staff_store.change_role(session, member, role, actor=ctx.actor()) else "unchanged"

    return await _change(request, change)


async def staff_disable(request: web.Request) -> web.StreamResponse:
    async def change(session, member, ctx):
        return "disabled" if await staff_store.disable(session, member, actor=ctx.actor(), now=ctx.now) else "unchanged"

    return await _change(request, change)


async def staff_enable(request: web.Request) -> web.StreamResponse:
    async def change(session, member, ctx):
        return "enabled" if await staff_store.enable(session, member, actor=ctx.actor()) else "unchanged"

    return await _change(request, change)


async def staff_end_sessions(request: web.Request) -> web.StreamResponse:
    async def change(session, member, ctx):
        keep = ctx.session.id_hash if member.id == ctx.staff.id else None  # not the admin's own current session
        await staff_store.end_sessions(session, member, actor=ctx.actor(), now=ctx.now, keep_session=keep)
        return "sessions_ended"

    return await _change(request, change)


async def staff_reset_totp(request: web.Request) -> web.StreamResponse:
    async def change(session, member, ctx):
        return "totp_reset" if await staff_store.reset_totp(session, member, actor=ctx.actor()) else "unchanged"

    return await _change(request, change)


async def staff_reset_password(request: web.Request) -> web.StreamResponse:
    """A new generated password, shown once; the account's sessions end."""
    ctx = request[CONTEXT]
    password = staff_store.generate_password()
    password_hash = await staff_store.hash_password(password)
    async with db(request) as session:
        member = await _member(session, request)
        keep = ctx.session.id_hash if member.id == ctx.staff.id else None
        await staff_store.set_password(session, member, password_hash, actor=ctx.actor(), now=ctx.now, keep_session=keep)
    return render(request, "staff_password.html", {"member": member, "password": password, "created": False})


ROUTES = [
    route("GET", "/staff", staff_list, name="staff", roles=ADMIN_ONLY),
    route("POST", "/staff", staff_create, name="staff_create", roles=ADMIN_ONLY),
    route("GET", f"/staff/{ID}", staff_detail, name="staff_detail", roles=ADMIN_ONLY),
    route("POST", f"/staff/{ID}/role", staff_role, name="staff_role", roles=ADMIN_ONLY),
    route("POST", f"/staff/{ID}/disable", staff_disable, name="staff_disable", roles=ADMIN_ONLY),
    route("POST", f"/staff/{ID}/enable", staff_enable, name="staff_enable", roles=ADMIN_ONLY),
    route("POST", f"/staff/{ID}/sessions/end", staff_end_sessions, name="staff_end_sessions", roles=ADMIN_ONLY),
    route("POST", f"/staff/{ID}/totp/reset", staff_reset_totp, name="staff_reset_totp", roles=ADMIN_ONLY),
    route("POST", f"/staff/{ID}/password", staff_reset_password, name="staff_reset_password", roles=ADMIN_ONLY),
]
