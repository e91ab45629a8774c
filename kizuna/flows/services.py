"""Process-wide services the handlers and flows use, built once by the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from kizuna.storage.types import utcnow

from .engine import FlowEngine

if TYPE_CHECKING:
    from .faq.inquiry import InquiryService


@dataclass
class Services:
    flows: FlowEngine
    # Public base URL of this server: coupon QR images and links point here.
    public_url: str
    # Answers customers' questions (issue 4): keyword rules, the FAQ, handoff offers.
    inquiries: "InquiryService | None" = None
    # "Now" for decisions that depend on the time of day (business hours); tests set it.
    clock: Callable[[], datetime] = field(default=utcnow)
