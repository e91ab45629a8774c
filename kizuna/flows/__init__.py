"""Conversations as explicit state machines (see engine.py)."""

from __future__ import annotations

from . import coupons, support
from .engine import Command, Flow


def all_flows() -> list[Flow]:
    """Every flow the bot runs; the engine checks their declarations when built."""
    from .registration import FLOWS as registration_flows

    return [*registration_flows]


def all_commands() -> list[Command]:
    """Every one-shot command (keyword or rich-menu tap without a conversation)."""
    from .registration import COMMANDS as registration_commands

    return [coupons.command, support.CSAT, *registration_commands]
