"""Narrowcast: recipients (audiences and and/or/not), demographic filters, limits, and the
asynchronous progress LINE reports.

``POST /v2/bot/message/narrowcast`` answers 202 ``{}`` at once; the work happens afterwards, as
at LINE: the request is ``waiting`` (``emu.narrowcast_wait_seconds``), then ``sending`` (in
chunks of ``emu.narrowcast_chunk`` recipients, yielding to the event loop between them), then
``succeeded`` or ``failed``. ``GET /v2/bot/message/progress/narrowcast?requestId=`` tells the
phase with ``targetCount``/``successCount``/``failureCount`` once known, ``acceptedTime`` and
``completedTime``; a failure has ``errorCode`` and ``failedDescription`` (messaging-api.yml):
1 internal error (here: over the monthly quota), 2 not enough recipients (none matched),
4 an audience of fewer than 50 recipients (``emu.narrowcast_min_audience``), 5 partial delivery
forbidden (``limit.forbidPartialDelivery``). Code 3 (a retried request) is answered 409 at
once, as for the other sends with a retry key.

Only friends (followed, not blocked) are sent to. ``recipient`` of type ``redelivery`` is
refused with 400: the emulator does not reproduce LINE's redelivery of past requests.
``filter.demographic`` evaluates age, gender, area, appType and subscriptionPeriod against
what the emulator knows of its users (``User.age`` etc., set by tests); a user whose attribute
is unknown never matches a condition on it (LINE estimates these for real users).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import validation
from .api import ApiError, Call, _iso, charge_quota, check_retry_key, json_response, require_valid

if TYPE_CHECKING:
    from .core import Emulator
    from .state import User

AGES = tuple(f"age_{n}" for n in range(15, 71, 5))
PERIODS = ("day_7", "day_30", "day_90", "day_180", "day_365")
GENDERS = ("male", "female")
APP_TYPES = ("ios", "android")
AREA_RE = re.compile(r"^(jp|tw|th|id)_[0-9]{2}$")
DAY = 86400.0


# --- validation ---------------------------------------------------------------------------------


def validate_recipient(errors: validation.Errors, node: Any, prop: str, depth: int = 0) -> None:
    if not isinstance(node, dict):
        errors.add(prop, "must be an object")
        return
    kind = node.get("type")
    if kind == "audience":
        value = node.get("audienceGroupId")
        if isinstance(value, bool) or not isinstance(value, int):
            errors.add(f"{prop}.audienceGroupId", "must be specified")
    elif kind == "redelivery":
        raise ApiError(400, "Recipient objects of type 'redelivery' are not supported by the emulator")
    elif kind == "operator":
        _validate_operator(errors, node, prop, depth, validate_recipient)
    else:
        errors.add(f"{prop}.type", "must be one of [audience, redelivery, operator]")


def validate_demographic(errors: validation.Errors, node: Any, prop: str, depth: int = 0) -> None:
    if not isinstance(node, dict):
        errors.add(prop, "must be an object")
        return
    kind = node.get("type")
    if kind in ("age", "subscriptionPeriod"):
        allowed = AGES if kind == "age" else PERIODS
        if "gte" not in node and "lt" not in node:
            errors.add(prop, "gte or lt must be specified")
        for bound in ("gte", "lt"):
            if bound in node and node[bound] not in allowed:
                errors.add(f"{prop}.{bound}", f"must be one of {list(allowed)}")
        if node.get("gte") in allowed and node.get("lt") in allowed and allowed.index(node["gte"]) >= allowed.index(node["lt"]):
            errors.add(prop, "gte must be less than lt")
    elif kind in ("gender", "appType", "area"):
        values = node.get("oneOf")
        if not isinstance(values, list) or not values:
            errors.add(f"{prop}.oneOf", "must be a non-empty array")
            return
        for i, value in enumerate(values):
            ok = (value in GENDERS if kind == "gender" else value in APP_TYPES if kind == "appType"
                  else isinstance(value, str) and bool(AREA_RE.match(value)))
            if not ok:
                errors.add(f"{prop}.oneOf[{i}]", "is not a valid value")
    elif kind == "operator":
        _validate_operator(errors, node, prop, depth, validate_demographic)
    else:
        errors.add(f"{prop}.type", "must be one of [age, appType, area, gender, operator, subscriptionPeriod]")


def _validate_operator(errors: validation.Errors, node: dict[str, Any], prop: str, depth: int, check: Callable[..., None]) -> None:
    present = [key for key in ("and", "or", "not") if key in node]
    if len(present) != 1:
        errors.add(prop, "exactly one of and, or, not must be specified")
        return
    if depth > 10:
        errors.add(prop, "is nested too deeply")
        return
    key = present[0]
    if key == "not":
        check(errors, node["not"], f"{prop}.not", depth + 1)
        return
    children = node[key]
    if not isinstance(children, list) or not children:
        errors.add(f"{prop}.{key}", "must be a non-empty array")
        return
    for i, child in enumerate(children):
        check(errors, child, f"{prop}.{key}[{i}]", depth + 1)


def _validate_limit(errors: validation.Errors, limit: Any) -> None:
    if limit is None:
        return
    if not isinstance(limit, dict):
        errors.add("limit", "must be an object")
        return
    maximum = limit.get("max")
    if maximum is not None and (isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1):
        errors.add("limit.max", "must be an integer of 1 or more")
    for flag in ("upToRemainingQuota", "forbidPartialDelivery"):
        if flag in limit and not isinstance(limit[flag], bool):
            errors.add(f"limit.{flag}", "must be a boolean")
    if limit.get("forbidPartialDelivery") is True and limit.get("upToRemainingQuota") is not True:
        errors.add("limit.forbidPartialDelivery", "can be true only if upToRemainingQuota is true")


def _audience_ids(node: Any, out: list[int]) -> list[int]:
    if isinstance(node, dict):
        if node.get("type") == "audience":
            out.append(node["audienceGroupId"])
        for key in ("and", "or"):
            for child in node.get(key) or ():
                _audience_ids(child, out)
        if "not" in node:
            _audience_ids(node["not"], out)
    return out


# --- the request ----------------------------------------------------------------------------------


async def narrowcast(call: Call) -> web.Response:
    check_retry_key(call)
    body = call.json_object()
    errors = validation.Errors()
    if body.get("recipient") is not None:
        validate_recipient(errors, body["recipient"], "recipient")
    flt = body.get("filter")
    if flt is not None:
        if not isinstance(flt, dict):
            errors.add("filter", "must be an object")
        elif flt.get("demographic") is not None:
            validate_demographic(errors, flt["demographic"], "filter.demographic")
    _validate_limit(errors, body.get("limit"))
    require_valid(errors.details + validation.validate_messages(body.get("messages")))
    emu = call.emu
    for audience_id in _audience_ids(body.get("recipient"), []):
        if audience_id not in emu.audiences:
            raise ApiError(400, "audience group not found", details=[{"message": "AUDIENCE_GROUP_NOT_FOUND"}])
    if call.retry_key:
        emu.accept_retry_key(call.retry_key, call.endpoint, call.request_id, None)
    progress: dict[str, Any] = {"phase": "waiting", "acceptedTime": _iso(emu.clock())}
    emu.narrowcasts[call.request_id] = progress
    task = asyncio.ensure_future(_run(call, body, progress))
    emu._background.add(task)
    task.add_done_callback(emu._background.discard)
    return json_response({}, 202)


async def progress(call: Call) -> web.Response:
    request_id = call.request.query.get("requestId", "")
    if not request_id:
        raise ApiError(400, "The value for the 'requestId' parameter is required")
    found = call.emu.narrowcasts.get(request_id)
    if found is None:
        raise ApiError(404, "Not found")
    return json_response(found)


async def _run(call: Call, body: dict[str, Any], progress: dict[str, Any]) -> None:
    emu = call.emu
    await asyncio.sleep(emu.narrowcast_wait_seconds)

    def fail(code: int, description: str) -> None:
        progress.update(phase="failed", errorCode=code, failedDescription=description,
                        completedTime=_iso(emu.clock()))

    try:
        for audience_id in _audience_ids(body.get("recipient"), []):
            audience = emu.audiences.get(audience_id)
            if audience is None:
                return fail(1, "The audience was deleted before the message was sent")
            if len(audience.user_ids) < emu.narrowcast_min_audience:
                return fail(4, f"An audience of less than {emu.narrowcast_min_audience} recipients is included as a condition of sending")
        targets = target_users(emu, body)
        limit = body.get("limit") or {}
        if limit.get("max") is not None and len(targets) > limit["max"]:
            targets = emu.random.sample(targets, limit["max"])  # LINE chooses at random
        if limit.get("upToRemainingQuota") and emu.quota_limit is not None:
            remaining = max(0, emu.quota_limit - emu.quota_used)
            if len(targets) > remaining:
                if limit.get("forbidPartialDelivery"):
                    return fail(5, "Message delivery has been canceled to prevent messages from being delivered only to a subset of the target audience")
                targets = emu.random.sample(targets, remaining)
        if not targets:
            return fail(2, "There weren't enough recipients")
        try:
            charge_quota(call, len(targets))
        except ApiError as refused:
            return fail(1, refused.body["message"])
        progress.update(phase="sending", targetCount=len(targets), successCount=0, failureCount=0)
        await emu._changed()
        send = emu.new_send("narrowcast", body["messages"], call.request_id, call.retry_key)
        step = max(1, emu.narrowcast_chunk)
        for start in range(0, len(targets), step):
            chunk = targets[start : start + step]
            emu.deliver_send(send, chunk)
            progress["successCount"] += len(chunk)
            await asyncio.sleep(0)  # let the API answer between chunks
        progress.update(phase="succeeded", completedTime=_iso(emu.clock()))
    finally:
        await emu._changed()


# --- who is targeted --------------------------------------------------------------------------------


def target_users(emu: Emulator, body: dict[str, Any]) -> list[str]:
    """Friends matching ``recipient`` and ``filter``, in the emulator's user order."""
    friends = [u for u in emu.users.values() if u.followed and not u.blocked]
    recipient = body.get("recipient")
    if recipient is not None:
        chosen = _recipients(emu, recipient, {u.user_id for u in friends})
        friends = [u for u in friends if u.user_id in chosen]
    demographic = (body.get("filter") or {}).get("demographic")
    if demographic is not None:
        now = emu.clock()
        friends = [u for u in friends if _matches(u, demographic, now)]
    return [u.user_id for u in friends]


def _recipients(emu: Emulator, node: dict[str, Any], everyone: set[str]) -> set[str]:
    kind = node["type"]
    if kind == "audience":
        return emu.audiences[node["audienceGroupId"]].user_ids & everyone
    if "and" in node:
        result = _recipients(emu, node["and"][0], everyone)
        for child in node["and"][1:]:
            result &= _recipients(emu, child, everyone)
        return result
    if "or" in node:
        result = set()
        for child in node["or"]:
            result |= _recipients(emu, child, everyone)
        return result
    return everyone - _recipients(emu, node["not"], everyone)


def _matches(user: User, node: dict[str, Any], now: float) -> bool:
    kind = node["type"]
    if kind == "operator":
        if "and" in node:
            return all(_matches(user, child, now) for child in node["and"])
        if "or" in node:
            return any(_matches(user, child, now) for child in node["or"])
        return not _matches(user, node["not"], now)
    if kind == "age":
        return user.age is not None and _within(user.age, node, "age_")
    if kind == "subscriptionPeriod":
        if user.followed_at is None:
            return False
        return _within((now - user.followed_at) / DAY, node, "day_")
    value = {"gender": user.gender, "appType": user.app_type, "area": user.area}[kind]
    return value is not None and value in node["oneOf"]


def _within(value: float, node: dict[str, Any], prefix: str) -> bool:
    low = int(node["gte"].removeprefix(prefix)) if "gte" in node else None
    high = int(node["lt"].removeprefix(prefix)) if "lt" in node else None
    return (low is None or value >= low) and (high is None or value < high)
