"""リッチメニュー (admins only): whether the menus are set up on LINE, and running the setup.

The console may not talk to LINE (nor import bot/): it calls `Services.rich_menus`, which the
app factory builds from bot/richmenu.py (`RichMenus`: `status()`, `setup(actor=...)`,
`image(key)`); the setup is the one `kizuna richmenu setup` runs (idempotent, never prunes a
member menu), and is written to the audit log.
"""

from __future__ import annotations

from aiohttp import web

from kizuna.storage.errors import ServiceError

from .. import forms
from ..context import CONTEXT, services_of
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

NOTICES = ("rich_menu_set_up",)


def _menus(request: web.Request):
    menus = services_of(request).rich_menus
    if menus is None:
        raise Refused(404, "error.404")
    return menus


async def _page(request: web.Request, *, problem: forms.Problem | None = None, report=None, status: int = 200) -> web.Response:
    status_now = None
    try:
        status_now = await _menus(request).status()
    except ServiceError as error:
        problem = problem or forms.problems(error, "rich_menu")[forms.FORM]
    return render(request, "richmenu.html", {
        "status": status_now, "problem": problem, "report": report, "notice": forms.notice(request, NOTICES),
    }, status=status)


async def richmenu_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def richmenu_setup(request: web.Request) -> web.StreamResponse:
    try:
        await _menus(request).setup(actor=request[CONTEXT].actor())
    except ServiceError as error:
        return await _page(request, problem=forms.problems(error, "rich_menu")[forms.FORM], status=502)
    return see_other(request.app.router["richmenu"].url_for().with_query({"notice": "rich_menu_set_up"}))


async def richmenu_image(request: web.Request) -> web.StreamResponse:
    """The menu's image, as the setup uploads it (bundled with the bot)."""
    image = _menus(request).image(request.match_info["key"])
    if image is None:
        raise Refused(404, "error.404")
    return web.Response(body=image, content_type="image/png")


ROUTES = [
    route("GET", "/richmenu", richmenu_page, name="richmenu", roles=ADMIN_ONLY),
    route("POST", "/richmenu/setup", richmenu_setup, name="richmenu_setup", roles=ADMIN_ONLY),
    route("GET", "/richmenu/{key:default|registered}.png", richmenu_image, name="richmenu_image", roles=ADMIN_ONLY),
]
