"""Routing events to handlers: a handler is a small function registered for an
event kind (and optionally a filter); routers are composed in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .context import HandlerContext

Handler = Callable[[Any, HandlerContext], Awaitable[None]]
Filter = Callable[[Any, HandlerContext], bool]


@dataclass(frozen=True)
class _Route:
    kind: str
    handler: Handler
    when: Filter | None


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self._routes: list[_Route] = []

    def on(self, kind: str, *, when: Filter | None = None) -> Callable[[Handler], Handler]:
        """Register for an event kind: "follow", "message" (any message), "message.text", ..."""

        def register(handler: Handler) -> Handler:
            self._routes.append(_Route(kind, handler, when))
            return handler

        return register

    def include(self, *routers: "Router") -> None:
        for router in routers:
            self._routes.extend(router._routes)

    async def dispatch(self, event: Any, ctx: HandlerContext) -> bool:
        """Run the first matching handler; False when none matched (recorded only)."""
        for kind in _kinds_of(ctx.event_type, ctx.payload):
            for route in self._routes:
                if route.kind == kind and (route.when is None or route.when(event, ctx)):
                    await route.handler(event, ctx)
                    return True
        return False

    def kinds(self) -> set[str]:
        return {route.kind for route in self._routes}


def _kinds_of(event_type: str, payload: dict) -> list[str]:
    """Most specific first: a text message tries "message.text", then "message"."""
    if event_type == "message":
        message_type = (payload.get("message") or {}).get("type")
        if message_type:
            return [f"message.{message_type}", "message"]
    return [event_type]
