"""The typed key through which the app factory (bot/app.py) hands the process's services to
the web parts that serve staff and other systems: the REST API (api/) and the console
(console/, a sub-app: `request.config_dict[SERVICES]`).

It lives here, outside bot/, because api/ and console/ may not import bot/; the keys that
only bot/ uses stay in bot/keys.py.
"""

from __future__ import annotations

from aiohttp import web

from kizuna.flows.services import Services

SERVICES = web.AppKey("services", Services)
