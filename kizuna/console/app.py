"""The console's factory: an aiohttp sub-app, mounted by the bot's `create_app` at /console.

    app.add_subapp("/console", create_console(settings=SETTINGS, sessions=SESSIONS))

It is handed the parent app's keys for the settings and the database sessions (resources
the parent opens in its cleanup_ctx), so it imports nothing from the bot.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import context, filters, routes, security
from .context import PARENT, Parent
from .render import JINJA

HERE = Path(__file__).parent
STATIC = HERE / "static"


def create_console(*, settings: web.AppKey, sessions: web.AppKey) -> web.Application:
    from . import views
    from .views.live import LIVE, LiveStreams

    console = web.Application(middlewares=[_not_found])
    console[PARENT] = Parent(settings=settings, sessions=sessions)
    console[LIVE] = LiveStreams()
    console.on_shutdown.append(console[LIVE].on_shutdown)
    env = aiohttp_jinja2.setup(
        console, app_key=JINJA, loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.globals["asset"] = asset
    env.filters.update(filters.FILTERS)
    routes.add_routes(console, views.routes())
    console.router.add_static("/static", STATIC, name="static", append_version=False)
    console.on_response_prepare.append(_headers)
    return console


@lru_cache(maxsize=64)
def _version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def asset(name: str) -> str:
    """The URL of a static file, with its content hash (a changed file is fetched anew)."""
    return f"/console/static/{name}?v={_version(name)}"


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    settings = context.settings_of(request)
    security.add_headers(response, https=settings.https, static=request.path.startswith("/console/static/"))


@web.middleware
async def _not_found(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        if request.path.startswith("/console/static/"):
            raise
        if request.path == "/console" and request.method == "GET":
            return routes.see_other("/console/")
        if context.CONTEXT not in request:
            request[context.CONTEXT] = await context.load(request)
        response = routes.error_page(request, exc.status, "error.404" if exc.status == 404 else "error.title")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = exc.headers.get("Allow", "")
        routes.apply_cookies(response, request[context.CONTEXT])
        return response
