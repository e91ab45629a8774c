"""The services of one process, built once by the app factory (`bot/app.py`) and shared.

The bot's handlers and flows get them with every event (`ctx.services`); the REST API and
the console get them from the app (`kizuna.appkeys.SERVICES`). The rules themselves are
functions in flows/ and storage/ that take a session (`storage.faq`, `storage.coupons`,
`flows.faq.settings` ...); this object holds what calling them needs from the process: the
database sessions, the work queue, the clock, and the bot's engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage.broadcast import Broadcaster, InProcessBroadcaster
from kizuna.storage.queue import WorkQueue
from kizuna.storage.types import utcnow

from .engine import FlowEngine

if TYPE_CHECKING:
    from .faq.inquiry import InquiryService
    from .media import MediaLibrary
    from .support import SupportDesk


class RichMenus(Protocol):
    """The rich menus on LINE, for staff (bot/richmenu.py `RichMenus` is the one there is):
    `status()`, `setup(actor=...)` (raising `Conflict("line_error")` when LINE refuses or is
    away) and `image(key)`, the PNG of a menu."""

    async def status(self) -> Any: ...

    async def setup(self, *, actor: Any) -> Any: ...

    def image(self, key: str) -> bytes | None: ...


@dataclass
class Services:
    flows: FlowEngine
    # Public base URL of this server: coupon QR images and links point here.
    public_url: str
    sessions: async_sessionmaker[AsyncSession]
    # Where work for the workers goes ("this source has pending events").
    queue: WorkQueue
    # Live updates for watching staff, published after commit (storage/broadcast.py).
    broadcaster: Broadcaster = field(default_factory=InProcessBroadcaster)
    # Answers customers' questions (issue 4): keyword rules, the FAQ, handoff offers.
    inquiries: "InquiryService | None" = None
    # Staff's actions on support conversations (flows/support.py).
    support: "SupportDesk | None" = None
    # What customers sent as images, video, audio, files: fetched from LINE once, kept (flows/media.py).
    media: "MediaLibrary | None" = None
    # "Now" for decisions that depend on the time of day (business hours); tests set it.
    clock: Callable[[], datetime] = field(default=utcnow)
    # The rich menus on LINE, for the console (the console may not talk to LINE itself).
    rich_menus: RichMenus | None = None
