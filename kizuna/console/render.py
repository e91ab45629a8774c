"""Rendering a page: the template gets `ctx` (who is asking, `context.Context`), `t` (the
texts in their language) and the view's values. Autoescaping is on for every template."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .context import CONTEXT

JINJA = web.AppKey("console_jinja", jinja2.Environment)


def render(request: web.Request, template: str, values: dict[str, Any] | None = None, *, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    page = {"ctx": ctx, "t": ctx.t, "request": request, **(values or {})}
    return aiohttp_jinja2.render_template(template, request, page, app_key=JINJA, status=status)
