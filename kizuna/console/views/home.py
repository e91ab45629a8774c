"""ホーム: how the shop is doing today (every role; marketers see the counts too)."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import dashboard

from ..context import CONTEXT, db
from ..render import render
from ..routes import route


async def home(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    async with db(request) as session:
        today = await dashboard.today(session, now=ctx.now)
    return render(request, "home.html", {"today": today})


ROUTES = [
    route("GET", "/", home, name="home"),
]
