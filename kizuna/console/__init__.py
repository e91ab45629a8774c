"""The staff console: an aiohttp sub-app at /console (server-rendered, Japanese first).

See `app.create_console` (the factory), `routes.py` (every route and who may use it),
`security.py` (cookies, CSRF, headers), `auth.py` (login), `views/` (the pages).
"""

from .app import create_console

__all__ = ["create_console"]
