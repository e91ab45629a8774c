"""A stand-in for the LINE platform over real HTTP: Messaging API, signed webhooks, chat page.

Imports nothing from the rest of Kizuna, so tests, benchmarks and ``make run`` can use it
against the bot exactly as they would use LINE.
"""

from .core import EMULATOR_KEY, Emulator
from .state import Delivered, RequestLog, RichMenu, User, WebhookResult

__all__ = ["EMULATOR_KEY", "Delivered", "Emulator", "RequestLog", "RichMenu", "User", "WebhookResult"]
