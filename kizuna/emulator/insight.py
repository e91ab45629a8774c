"""Aggregation units and the insight LINE gives about sent messages: opens and clicks.

LINE's rules (messaging-api.yml, insight.yml, and "Get statistics per aggregation unit" in the
Messaging API docs):
- push and multicast may carry ``customAggregationUnits``: at most one name, 1-30 characters of
  ``[a-zA-Z0-9_]``, case-sensitive; a channel may use up to 1,000 different names a month
  (counted from the 1st, JST). What LINE answers to the 1,001st is not published: the emulator
  refuses it with 400.
- ``GET /v2/bot/message/aggregation/info`` and ``.../list`` tell the names used this month.
- ``GET /v2/bot/insight/message/event/aggregation`` gives a unit's opens and clicks for messages
  sent from ``from`` to ``to`` (yyyyMMdd, JST, at most 30 days apart); ``GET
  /v2/bot/insight/message/event?requestId=`` the same for one narrowcast or broadcast.
- LINE withholds figures about fewer than 20 users (privacy): the emulator answers null below
  ``emu.insight_min_users`` (20, as LINE; tests lower it).

Opens and clicks are what the chat page (or a test, with ``emu.open``/``emu.click``) reports:
a bubble shown is an impression, a tapped URI action is a click.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .state import Send

if TYPE_CHECKING:
    from .api import Call
    from .core import Emulator

UNIT_NAME_RE = re.compile(r"^[a-zA-Z0-9_]{1,30}$")
MAX_UNITS_PER_MONTH = 1000
MAX_PERIOD_DAYS = 30
LIST_LIMIT_MAX = 100  # LINE's default and maximum `limit` of the unit name list
JST = dt.timezone(dt.timedelta(hours=9))
DATE_RE = re.compile(r"^[0-9]{8}$")


def month_of(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, JST).strftime("%Y%m")


def date_of(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, JST).strftime("%Y%m%d")


# --- customAggregationUnits on push and multicast ----------------------------------------------


def validate_units(errors: Any, body: dict[str, Any]) -> str | None:
    """Check ``customAggregationUnits``; the one unit name, or None when there is none."""
    units = body.get("customAggregationUnits")
    if units is None:
        return None
    if not isinstance(units, list):
        errors.add("customAggregationUnits", "must be an array")
        return None
    if len(units) > 1:
        errors.add("customAggregationUnits", "size must be between 0 and 1")
        return None
    if not units:
        return None
    name = units[0]
    if not isinstance(name, str) or not UNIT_NAME_RE.match(name):
        errors.add(
            "customAggregationUnits[0]",
            "must be 1-30 characters of half-width alphanumerics (a-z, A-Z, 0-9) and underscores",
        )
        return None
    return name


def check_unit(call: Call, unit: str | None) -> None:
    """Refuse a name that would be this month's 1,001st distinct unit (before anything is sent)."""
    if unit is None:
        return
    from .api import ApiError

    emu = call.emu
    used = emu.units_by_month.get(month_of(emu.clock()), {})
    if unit not in used and len(used) >= emu.max_units_per_month:
        raise ApiError(
            400,
            f"The number of aggregation units used this month has reached the limit ({emu.max_units_per_month})",
        )


def record_unit(call: Call, unit: str | None) -> None:
    """Count ``unit`` among this month's names (once the message is sent)."""
    if unit is not None:
        # A dict keeps the order in which names were first used (the list endpoint's order).
        call.emu.units_by_month.setdefault(month_of(call.emu.clock()), {}).setdefault(unit, None)


async def aggregation_info(call: Call) -> web.Response:
    from .api import json_response

    used = call.emu.units_by_month.get(month_of(call.emu.clock()), {})
    return json_response({"numOfCustomAggregationUnits": len(used)})


async def aggregation_list(call: Call) -> web.Response:
    from .api import ApiError, json_response

    names = list(call.emu.units_by_month.get(month_of(call.emu.clock()), {}))
    limit_text = call.request.query.get("limit") or str(LIST_LIMIT_MAX)
    start_text = call.request.query.get("start") or "0"
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= LIST_LIMIT_MAX:
        raise ApiError(400, f"The value for the 'limit' parameter must be an integer between 1 and {LIST_LIMIT_MAX}")
    if not start_text.isdigit():
        raise ApiError(400, "The value for the 'start' parameter is invalid")
    limit, start = int(limit_text), int(start_text)
    out: dict[str, Any] = {"customAggregationUnits": names[start : start + limit]}
    if start + limit < len(names):
        out["next"] = str(start + limit)  # LINE's token is opaque; here it is an offset
    return json_response(out)


# --- opens and clicks ----------------------------------------------------------------------------


def record_open(emu: Emulator, user_id: str, send: Send, index: int | None = None) -> None:
    """The user looked at the message (all its bubbles, or bubble ``index``)."""
    if send.interactions is None:
        send.interactions = []
    indexes = range(len(send.messages)) if index is None else (index,)
    for i in indexes:
        send.interactions.append(("open", user_id, i, None, emu.clock()))


def record_click(emu: Emulator, user_id: str, send: Send, index: int, url: str) -> None:
    if send.interactions is None:
        send.interactions = []
    send.interactions.append(("click", user_id, index, url, emu.clock()))


def urls_in(message: Any) -> list[str]:
    """Every URI a tap can open in a message object (actions anywhere in it), in order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "uri" and isinstance(node.get("uri"), str):
                found.append(node["uri"])
            if isinstance(node.get("linkUri"), str):  # imagemap uri actions
                found.append(node["linkUri"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message)
    return list(dict.fromkeys(found))


# --- the figures ------------------------------------------------------------------------------


def statistics(emu: Emulator, sends: Iterable[Send]) -> dict[str, Any]:
    """LINE's statistics shape (overview, messages, clicks) over one or more sends."""
    bubbles: dict[int, dict[str, Any]] = {}
    clicks: dict[tuple[int, str], dict[str, Any]] = {}
    opened: set[str] = set()
    clicked: set[str] = set()
    clicked_url: dict[str, set[str]] = {}
    for send in sends:
        for kind, user_id, index, url, _at in send.interactions or ():
            seq = index + 1  # LINE numbers bubbles from 1
            if kind == "open":
                bubble = bubbles.setdefault(seq, {"impression": 0, "users": set()})
                bubble["impression"] += 1
                bubble["users"].add(user_id)
                opened.add(user_id)
            else:
                entry = clicks.setdefault((seq, url or ""), {"click": 0, "users": set()})
                entry["click"] += 1
                entry["users"].add(user_id)
                clicked.add(user_id)
                clicked_url.setdefault(url or "", set()).add(user_id)
    hide = emu.insight_min_users

    def users(count: int) -> int | None:
        return count if count >= hide else None

    media = {"uniqueMediaPlayed": None, "uniqueMediaPlayed100Percent": None}
    return {
        "overview": {"uniqueImpression": users(len(opened)), "uniqueClick": users(len(clicked)), **media},
        "messages": [
            {
                "seq": seq,
                "impression": data["impression"],
                "uniqueImpression": users(len(data["users"])),
                "mediaPlayed": None, "mediaPlayed25Percent": None, "mediaPlayed50Percent": None,
                "mediaPlayed75Percent": None, "mediaPlayed100Percent": None,
                "uniqueMediaPlayed": None, "uniqueMediaPlayed25Percent": None,
                "uniqueMediaPlayed50Percent": None, "uniqueMediaPlayed75Percent": None,
                "uniqueMediaPlayed100Percent": None,
            }
            for seq, data in sorted(bubbles.items())
        ],
        "clicks": [
            {
                "seq": seq,
                "url": url,
                "click": data["click"],
                "uniqueClick": users(len(data["users"])),
                "uniqueClickOfRequest": users(len(clicked_url.get(url, ()))),
            }
            for (seq, url), data in sorted(clicks.items())
        ],
    }


def _date(call: Call, name: str) -> dt.date:
    from .api import ApiError

    value = call.request.query.get(name, "")
    if not DATE_RE.match(value):
        raise ApiError(400, f"The value for the '{name}' parameter must be a date in yyyyMMdd format")
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ApiError(400, f"The value for the '{name}' parameter must be a date in yyyyMMdd format") from None


async def statistics_per_unit(call: Call) -> web.Response:
    from .api import ApiError, json_response

    unit = call.request.query.get("customAggregationUnit", "")
    if not UNIT_NAME_RE.match(unit):
        raise ApiError(400, "The value for the 'customAggregationUnit' parameter is invalid")
    start, end = _date(call, "from"), _date(call, "to")
    if end < start or (end - start).days > MAX_PERIOD_DAYS:
        raise ApiError(400, f"The 'to' date must be on or after 'from' and at most {MAX_PERIOD_DAYS} days later")
    first, last = start.strftime("%Y%m%d"), end.strftime("%Y%m%d")
    sends = (s for s in call.emu.sends if s.unit == unit and first <= date_of(s.at) <= last)
    return json_response(statistics(call.emu, sends))


async def message_event(call: Call) -> web.Response:
    from .api import ApiError, json_response

    request_id = call.request.query.get("requestId", "")
    if not request_id:
        raise ApiError(400, "The value for the 'requestId' parameter is required")
    send = call.emu.sends_by_request.get(request_id)
    if send is None or send.via not in ("narrowcast", "broadcast"):
        # LINE keeps these for narrowcast and broadcast requests only.
        raise ApiError(404, "Not found")
    figures = statistics(call.emu, [send])
    delivered = len(send.recipients) - len(send.undelivered or ())
    figures["overview"] = {"requestId": request_id, "timestamp": int(send.at), "delivered": delivered, **figures["overview"]}
    return json_response(figures)
