"""Forms of the pages that change the bot and the coupons: reading what was posted, and the
services' typed errors shown beside the field they name.

The console checks nothing itself: a form's text goes to the service as typed (a number
that is not one stays text), and what the service refuses comes back here. `Invalid(field)`
is shown at that field, `Conflict(code)` and `NotFound` above the form; each with a sentence
in the reader's language (`invalid.<area>.<field>`, `conflict.<code>` in the catalogue) and
the service's own message beneath it, which says exactly what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from kizuna.storage.errors import Conflict, Invalid, NotFound, ServiceError

from .i18n import MESSAGES

FORM = ""  # the key of a problem with the form as a whole


@dataclass(frozen=True)
class Problem:
    key: str  # the catalogue's sentence
    detail: str | None = None  # the service's own message


def problems(error: ServiceError, area: str) -> dict[str, Problem]:
    """{field: Problem} for a service's refusal; the field `FORM` is the form as a whole."""
    if isinstance(error, Invalid):
        name = error.field.split(".")[0].split("[")[0]
        key = f"invalid.{area}.{name}"
        return {name: Problem(key if key in MESSAGES else "invalid.field", error.message)}
    if isinstance(error, Conflict):
        key = f"conflict.{error.code}"
        return {FORM: Problem(key if key in MESSAGES else "conflict.other", error.message)}
    if isinstance(error, NotFound):
        return {FORM: Problem("error.gone", error.message)}
    raise TypeError(f"no problem for {type(error).__name__}")


async def posted(request: web.Request, *names: str, limit: int = 10_000) -> dict[str, str]:
    """The form's text fields (missing ones as ""), each cut at `limit` characters (the
    services' own limits are far below: what is cut is refused anyway, not stored)."""
    form = await request.post()
    return {name: str(form.get(name, ""))[:limit] for name in names}


def whole_number(text: str) -> int | str | None:
    """"12" → 12, "" → None; anything else stays the text, for the service to refuse."""
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return int(text, 10)
    except ValueError:
        return text


def lines(text: str) -> list[str]:
    """A textarea of one item per line (phrasings, holidays)."""
    return [line for line in text.splitlines() if line.strip()]


def checked(form: dict[str, str], name: str) -> bool:
    """A checkbox: browsers send "on" when it is ticked, nothing when not."""
    return form.get(name) == "on"


def notice(request: web.Request, allowed: tuple[str, ...]) -> str | None:
    """The `?notice=` of a redirect after a form, when it is one of the page's own."""
    value = request.query.get("notice")
    return f"notice.{value}" if value in allowed else None
