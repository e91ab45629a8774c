"""Conversations as explicit state machines (see engine.py)."""

from __future__ import annotations

from .engine import Command, Flow


def all_flows() -> list[Flow]:
    """Every flow the bot runs; the engine checks their declarations when built."""
    return []


def all_commands() -> list[Command]:
    """Every one-shot command (keyword or rich-menu tap without a conversation)."""
    return []
