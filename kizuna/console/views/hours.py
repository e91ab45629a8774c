"""営業時間: the weekly hours and the holidays. Outside them, the bot's offers of a person say
when someone will reply. The rules are flows/faq/settings.py's (and hours.py's), as for
the REST API; marketers and admins change them, as there.
"""

from __future__ import annotations

import re
import unicodedata

from aiohttp import web

from kizuna.flows.faq import settings as inquiry_settings
from kizuna.flows.faq.hours import DAYS, MAX_INTERVALS_PER_DAY, describe_when
from kizuna.storage.errors import ServiceError

from .. import forms
from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import MARKETING, route, see_other

NOTICES = ("hours_saved",)
SLOTS = 2  # intervals offered per day (a lunch break); more when a day already has more
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")


def _clock(text: str) -> str:
    """How people type a time (9:00, ９：００) as the service reads it (09:00); anything
    else is passed on as typed, for the service to refuse."""
    text = unicodedata.normalize("NFKC", text).strip()
    found = _CLOCK.fullmatch(text)
    return f"{int(found[1]):02d}:{found[2]}" if found else text


def _date(text: str) -> str:
    """2026/12/31, 2026-1-2 → 2026-12-31, 2026-01-02 (the service checks the date)."""
    text = unicodedata.normalize("NFKC", text).strip()
    found = _DATE.fullmatch(text)
    return f"{found[1]}-{int(found[2]):02d}-{int(found[3]):02d}" if found else text


def _weekly(form) -> dict[str, list[list[str]]]:
    """The schedule as the service takes it: per day the intervals filled in (a half-filled
    one is sent as it is, and refused there)."""
    weekly = {}
    for day in DAYS:
        pairs = [[_clock(str(form.get(f"{day}-{slot}-open", ""))), _clock(str(form.get(f"{day}-{slot}-close", "")))]
                 for slot in range(MAX_INTERVALS_PER_DAY)]
        weekly[day] = [pair for pair in pairs if pair[0] or pair[1]]
    return weekly


def _rows(weekly: dict | None) -> list[dict]:
    rows = []
    for day in DAYS:
        intervals = [list(pair) for pair in (weekly or {}).get(day) or []]
        slots = max(SLOTS, len(intervals))
        rows.append({"day": day, "slots": [intervals[i] if i < len(intervals) else ["", ""] for i in range(slots)]})
    return rows


async def _page(request: web.Request, *, form=None, errors=None, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    now = services_of(request).clock()
    async with db(request) as session:
        hours = await inquiry_settings.business_hours(session, now)
    if form is None:
        form = {"configured": hours.configured, "weekly": hours.weekly, "holidays": "\n".join(hours.holidays)}
    return render(request, "hours.html", {
        "hours": hours, "rows": _rows(form["weekly"]), "form": form, "errors": errors or {},
        "next_opening": describe_when(hours.next_opening, now, ctx.locale) if hours.next_opening else None,
        "notice": forms.notice(request, NOTICES),
    }, status=status)


async def hours_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def hours_save(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    posted = await request.post()
    configured = posted.get("configured") == "yes"
    weekly = _weekly(posted)
    holidays = [_date(line) for line in forms.lines(str(posted.get("holidays", ""))[:20_000])]
    try:
        async with db(request) as session:
            await inquiry_settings.set_business_hours(session, weekly if configured else None, holidays,
                                                      services_of(request).clock(), actor=ctx.actor())
    except ServiceError as error:
        form = {"configured": configured, "weekly": weekly, "holidays": "\n".join(holidays)}
        return await _page(request, form=form, errors=forms.problems(error, "hours"), status=400)
    return see_other(request.app.router["hours"].url_for().with_query({"notice": "hours_saved"}))


ROUTES = [
    route("GET", "/hours", hours_page, name="hours", roles=MARKETING),
    route("POST", "/hours", hours_save, name="hours_save", roles=MARKETING),
]
