"""Process-wide services the handlers and flows use, built once by the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .engine import FlowEngine


@dataclass
class Services:
    flows: FlowEngine
    # Public base URL of this server: coupon QR images and links point here.
    public_url: str
    # Answers customers' questions (issue 4); None until configured.
    inquiries: Any = None
