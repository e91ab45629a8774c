"""Live updates for the console's pages: server-sent events from the process's broadcaster
(storage/broadcast.py: Redis pub/sub in production, so a message stored by a worker shows in
a console served by another process; in-process in embedded mode).

Each staff member is sent only what their role may see: conversation and message updates go
to those who answer conversations; customer updates and `reload` to everyone. An update
carries ids, never content: the page re-reads what it shows (static/live.js).

The stream is a request the page makes by itself: it never keeps a session from its idle
timeout, it checks now and then that the session is still good (and ends with a `logout`
event when not), and it ends when the server shuts down (EventSource reconnects, and the
page re-reads what it shows when it does).
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from kizuna.appkeys import SERVICES
from kizuna.storage import staff_sessions
from kizuna.storage.roles import Role
from kizuna.storage.types import utcnow

from .. import config
from ..context import CONTEXT, db
from ..routes import CONVERSATIONS, route

log = logging.getLogger("kizuna.console.live")

HEARTBEAT_SECONDS = 15.0  # a comment line this often: proxies keep the stream, a gone client is noticed
CHECK_SECONDS = 30.0  # how often the session is checked
RETRY_MILLISECONDS = 2000  # EventSource's wait before it reconnects
# Fields an update may carry to the browser (the broadcaster's updates may hold more one day).
FIELDS = ("type", "conversation_id", "customer_id", "status", "assignee_id", "interaction_id")


class LiveStreams:
    """The console's open streams, told to end when the server shuts down (aiohttp waits for
    running requests; an endless one would hold the shutdown up)."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    async def on_shutdown(self, _app: web.Application) -> None:
        self.stopping.set()


LIVE = web.AppKey("console_live", LiveStreams)


def visible(update: dict, role: Role) -> dict | None:
    """What of `update` a staff member with `role` is sent, if anything."""
    kind = update.get("type")
    if kind == "reload":
        return {"type": "reload"}
    if kind in ("conversation", "message") and role in CONVERSATIONS:
        return {key: update[key] for key in FIELDS if key in update}
    if kind == "customer":
        return {"type": "customer", "customer_id": update.get("customer_id")}
    return None  # a kind nobody has decided who may see


def _event(update: dict) -> bytes:
    return f"event: {update['type']}\ndata: {json.dumps(update)}\n\n".encode()


async def live(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    streams = request.app[LIVE]
    role = ctx.role
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    try:
        async with request.config_dict[SERVICES].broadcaster.subscribe() as updates:
            # Subscribed: from here on nothing published is missed (the page re-reads after this).
            await response.write(f"retry: {RETRY_MILLISECONDS}\nevent: ready\ndata: {{}}\n\n".encode())
            next_update = asyncio.ensure_future(anext(updates))
            stopping = asyncio.ensure_future(streams.stopping.wait())
            checked = loop.time()
            try:
                while not stopping.done():
                    done, _ = await asyncio.wait({next_update, stopping}, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                    if next_update in done:
                        update = next_update.result()
                        next_update = asyncio.ensure_future(anext(updates))
                        shown = visible(update, role)
                        if shown is not None:
                            await response.write(_event(shown))
                        continue
                    if loop.time() - checked >= CHECK_SECONDS:
                        checked = loop.time()
                        role = await _role_if_still_live(request)
                        if role is None:
                            await response.write(b"event: logout\ndata: {}\n\n")
                            break
                    await response.write(b": ping\n\n")
            finally:
                # The pending read is cancelled, never left: the subscription is let go with it.
                for task in (next_update, stopping):
                    task.cancel()
                await asyncio.gather(next_update, stopping, return_exceptions=True)
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    return response


async def _role_if_still_live(request: web.Request) -> Role | None:
    ctx = request[CONTEXT]
    async with db(request) as session:
        staff = await staff_sessions.still_live(session, ctx.session.id_hash, timeouts=config.timeouts(ctx.settings), now=utcnow())
    return Role(staff.role) if staff is not None else None


ROUTES = [
    route("GET", "/live", live, name="live", background=True),
]
