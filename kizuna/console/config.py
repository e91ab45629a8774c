"""What the console needs from the app's settings (kizuna.bot.settings.Settings has it;
the console reads it through this protocol and never imports the bot)."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from kizuna.storage.login_attempts import Policy
from kizuna.storage.staff_sessions import Timeouts


class ConsoleSettings(Protocol):
    secret_key: str
    emulator: bool | None
    session_idle_timeout_seconds: float
    session_max_age_seconds: float
    login_max_failures: int
    login_throttle_seconds: float
    trust_forwarded_for: bool

    @property
    def https(self) -> bool: ...

    @property
    def line_connected(self) -> bool: ...


def timeouts(settings: ConsoleSettings) -> Timeouts:
    return Timeouts(idle=timedelta(seconds=settings.session_idle_timeout_seconds),
                    absolute=timedelta(seconds=settings.session_max_age_seconds))


def throttle_policy(settings: ConsoleSettings) -> Policy:
    return Policy(max_failures=settings.login_max_failures, window=timedelta(seconds=settings.login_throttle_seconds))
