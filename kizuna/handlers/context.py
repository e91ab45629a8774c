"""What a handler is given: the customer, the event, bot texts, and a way to reply.

Handlers ask for what they need through this object and never open sessions,
clients or connections themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kizuna.flows.engine import FlowContext
from kizuna.flows.services import Services
from kizuna.storage import texts
from kizuna.storage.models import Customer
from kizuna.storage.types import utcnow


@dataclass
class HandlerContext:
    session: Any  # the storage session of this event's transaction
    customer: Customer | None
    event_type: str
    payload: dict
    event_time: datetime
    # Set by the processor: fetches and stores a fresh LINE profile (on follow).
    refresh_profile: Callable[[], Awaitable[None]]
    services: Services
    replies: list[dict] = field(default_factory=list)
    effects: list[dict] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)

    @property
    def locale(self) -> str:
        return texts.locale_for(self.customer.language if self.customer else None)

    async def text(self, key: str) -> str:
        return await texts.get_text(self.session, key, self.locale)

    def reply(self, *messages: dict) -> None:
        """Queue messages; they go out with the reply token after the event commits."""
        self.replies.extend(messages)

    async def reply_text(self, key: str) -> None:
        self.reply({"type": "text", "text": await self.text(key)})

    def flow_context(self) -> FlowContext:
        """The same event seen by a flow: replies collected in the same list."""
        assert self.customer is not None
        return FlowContext(
            session=self.session, customer=self.customer, now=utcnow(), replies=self.replies, services=self.services, effects=self.effects,
            updates=self.updates,
        )
