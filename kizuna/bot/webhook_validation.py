"""What a signed webhook body may bring in: the body's shape, and each event's fields.

`read_events(body)` turns the (already signature-checked) bytes into one `Inbound` per
event. A body that is not a LINE webhook at all - not JSON, not an object with an `events`
array, or nested absurdly deep outside its events - raises `NotAWebhook` (the webhook
answers 400). Anything else is answered 200: bad *events* never spoil a good *body*.

Each event is checked against `RULES` (the fields the rest of the system relies on) and
walked once for what no database or handler should see: NUL characters and lone
surrogates (PostgreSQL's text and JSONB refuse them), strings longer than `MAX_STRING`,
nesting deeper than `MAX_DEPTH`, numbers that are not finite (JSON has no NaN). A valid
event is stored as LINE sent it and processed. An invalid one is stored `parked` with the
reason and a sanitised copy (`sanitised`), and never processed.

Every event gets a key for `inbound_events.webhook_event_id` (unique): its
`webhookEventId` when that is usable, else a digest - of the id when it is a string (so
two over-long ids sharing a prefix stay two events, and a redelivery stays one), else of
the whole event without `deliveryContext` (which a redelivery changes). Nothing is ever
truncated into a key.

Hot path: a normal body costs one parse (`_parse`: orjson where it reads a body exactly
as `json.loads` would, else `json.loads`), a dict lookup per rule and one walk over each
event. Python's parser raises RecursionError on deep input (about 1,000 levels); only
then is the body re-read by `_cut_deep`, which replaces whatever lies too deep with `null`
without parsing, so a deep event is parked while its siblings are stored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, NamedTuple

import orjson

MAX_DEPTH = 32  # objects/arrays nested in one event (the event itself is level 1); LINE's deepest is about 5
MAX_STRING = 10_000  # characters in any string or key of an event; LINE's longest (message text) is 5,000
MAX_ID = 64  # webhookEventId, userId, groupId, roomId: the columns are varchar(64)
MAX_TYPE = 40  # inbound_events.event_type
MAX_REPLY_TOKEN = 255  # deliveries.reply_token
MAX_TIMESTAMP = 10**13 - 1  # milliseconds since 1970: the year 2286; a datetime can hold it
MAX_REASON = 2_000  # characters of `last_error`

_MISSING = object()
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotAWebhook(ValueError):
    """The body is not a LINE webhook at all (400)."""


class _Unreadable(str):
    """Stands in for a number Python refuses to read (over 4,300 digits): flagged by the
    walk, stored as its text."""


class Inbound(NamedTuple):
    """One event as it will be stored (`storage.events.event_row`'s arguments): a valid one
    has no `parked_reason`."""

    webhook_event_id: str
    event_type: str
    source_key: str
    line_user_id: str | None
    event_timestamp: int
    is_redelivery: bool
    payload: dict
    parked_reason: str | None


# --- the rules ---------------------------------------------------------------------------

# What the rest of the system relies on: (parent, field, required, type, range). The range
# bounds a string's length or an integer's value. An optional field may be absent; when
# present (null included) it must match. NUL, lone surrogates, sizes and depth are checked
# for every string and level by the walk, listed here or not.
RULES: tuple[tuple[str | None, str, bool, type, tuple[int, int] | None], ...] = (
    (None, "webhookEventId", True, str, (1, MAX_ID)),  # the dedupe key
    (None, "type", True, str, (1, MAX_TYPE)),
    (None, "timestamp", True, int, (0, MAX_TIMESTAMP)),  # orders a customer's events
    (None, "replyToken", False, str, (1, MAX_REPLY_TOKEN)),
    (None, "source", False, dict, None),
    ("source", "userId", False, str, (1, MAX_ID)),  # customers.line_user_id, the ordering key
    ("source", "groupId", False, str, (1, MAX_ID)),
    ("source", "roomId", False, str, (1, MAX_ID)),
    (None, "deliveryContext", False, dict, None),
    ("deliveryContext", "isRedelivery", False, bool, None),
    (None, "message", False, dict, None),
    ("message", "type", False, str, (1, MAX_TYPE)),
    ("message", "text", False, str, None),
    (None, "postback", False, dict, None),
    ("postback", "data", False, str, None),
    ("postback", "params", False, dict, None),
    (None, "follow", False, dict, None),
)


def _broken_rules(event: dict) -> list[str]:
    problems = []
    for parent, field, required, kind, bounds in RULES:
        container = event if parent is None else event.get(parent)
        if type(container) is not dict:
            continue  # absent, or the parent's own rule reports it
        value = container.get(field, _MISSING)
        name = field if parent is None else f"{parent}.{field}"
        if value is _MISSING:
            if required:
                problems.append(f"{name} is missing")
        elif type(value) is not kind:  # so a bool is no integer and 1e20 (a float) no timestamp
            problems.append(f"{name} must be {_what(kind, bounds)}")
        elif bounds is not None and not bounds[0] <= (len(value) if kind is str else value) <= bounds[1]:
            problems.append(f"{name} must be {_what(kind, bounds)}")
    return problems


def _what(kind: type, bounds: tuple[int, int] | None) -> str:
    if kind is str:
        return f"a string of {bounds[0]} to {bounds[1]} characters" if bounds else "a string"
    if kind is int:
        return f"an integer from {bounds[0]} to {bounds[1]}" if bounds else "an integer"
    return "an object" if kind is dict else "true or false"


def _is_id(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID and _string_problem(value) is None


# --- reading a body ----------------------------------------------------------------------


# orjson parses a webhook body about 3x faster than json. Where it reads a body at all, it
# reads it as json does, with two exceptions: integers beyond 64 bits (it makes floats of
# them) and nesting deeper than Python's recursion limit (it goes to 1,024 levels, where
# json raises RecursionError and `_cut_deep` takes over). Bodies that could hold either
# (a run of 19 digits, many brackets) skip it. What it refuses and json reads (NaN,
# Infinity, 1e400, lone surrogates, a BOM, UTF-16) goes to json.
_FAST_PATH_MAX_BRACKETS = 200
# Every digit as "0", anything else as a space: 19 digits in a row become `_19_DIGITS`
# (a translate and a substring search cost a tenth of a regex search here).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_19_DIGITS = b"0" * 19


def _parse(body: bytes) -> tuple[Any, bool]:
    """The document, and whether it is plain: nothing in it can need the walk (`_problem`).

    A body orjson reads holds no NaN or infinity, and no NUL or raw control character
    (JSON forbids them in strings); without any `\\u` escape it cannot spell a NUL or a
    lone surrogate either; no string in it is longer than the body; and it cannot be
    nested deeper than it has brackets. LINE's bodies are like that (a few hundred bytes
    of UTF-8), so the common case skips the walk."""
    brackets = body.count(b"{") + body.count(b"[")
    if brackets <= _FAST_PATH_MAX_BRACKETS and _19_DIGITS not in body.translate(_DIGITS_AS_ZERO):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            return document, brackets <= MAX_DEPTH and len(body) <= MAX_STRING and b"\\u" not in body
    return json.loads(body), False


def read_events(body: bytes) -> list[Inbound]:
    """The events of a signed body, each checked; NotAWebhook when it is not a webhook."""
    try:
        document, plain = _parse(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NotAWebhook("body is not valid JSON") from None
    except (RecursionError, ValueError):  # too deep for Python, or an integer of 4,300+ digits
        try:
            # The body is at level 1, its events array at 2, an event at 3: keep one level
            # more than an event may have, so the walk still sees that it was too deep.
            document, plain = json.loads(_cut_deep(body, MAX_DEPTH + 3), parse_int=_read_int), False
        except (ValueError, RecursionError):
            raise NotAWebhook("body is not valid JSON") from None
    if type(document) is not dict or type(document.get("events")) is not list:
        raise NotAWebhook("body must be an object with an events array")
    for key, value in document.items():
        # Not stored, so only its depth matters: as deep as an event may be.
        if key != "events" and _deeper_than(value, MAX_DEPTH):
            raise NotAWebhook("body is nested too deeply outside its events")
    return [check_event(event, walk=not plain) for event in document["events"]]


def check_event(event: Any, *, walk: bool = True) -> Inbound:
    """One event as LINE sent it (any JSON value) -> its row fields, valid or parked.
    `walk=False` when its body was plain (see `_parse`): only the rules are checked."""
    if type(event) is not dict:
        return _invalid(event, ["the event must be an object"])
    problems = _broken_rules(event)
    found = _problem(event, 1) if walk else None
    if found is not None:
        where, what = found
        problems.append(f"{_path_text(where)} {what}")
    if problems:
        return _invalid(event, problems)
    source = event.get("source") or {}
    user_id = source.get("userId")
    event_id = event["webhookEventId"]
    return Inbound(
        webhook_event_id=event_id,
        event_type=event["type"],
        source_key=user_id or source.get("groupId") or source.get("roomId") or f"event:{event_id}",
        line_user_id=user_id,
        event_timestamp=event["timestamp"],
        is_redelivery=(event.get("deliveryContext") or {}).get("isRedelivery", False),
        payload=event,
        parked_reason=None,
    )


def _invalid(event: Any, problems: list[str]) -> Inbound:
    """A parked event: what of it can be trusted, a key that cannot collide, a storable copy."""
    fields = event if type(event) is dict else {}
    source = fields.get("source") if type(fields.get("source")) is dict else {}
    ids = {name: source.get(name) for name in ("userId", "groupId", "roomId") if _is_id(source.get(name))}
    event_id = fields.get("webhookEventId", _MISSING)
    if _is_id(event_id):
        key = event_id
    elif type(event_id) is str:
        key = _digest(b"id:" + event_id.encode("utf-8", "surrogatepass"))
    else:
        # A redelivery differs only in deliveryContext: leave it out, so it stays one event.
        unique = {k: v for k, v in fields.items() if k != "deliveryContext"} if type(event) is dict else event
        key = _digest(b"event:" + _fingerprint(unique))
    event_type = fields.get("type")
    timestamp = fields.get("timestamp")
    delivery = fields.get("deliveryContext")
    usable_type = type(event_type) is str and 0 < len(event_type) <= MAX_TYPE and _string_problem(event_type) is None
    payload = sanitised(event)
    return Inbound(
        webhook_event_id=key,
        event_type=event_type if usable_type else "invalid",
        source_key=ids.get("userId") or ids.get("groupId") or ids.get("roomId") or f"event:{key}",
        line_user_id=ids.get("userId"),
        event_timestamp=timestamp if type(timestamp) is int and 0 <= timestamp <= MAX_TIMESTAMP else 0,
        is_redelivery=type(delivery) is dict and delivery.get("isRedelivery") is True,
        payload=payload if type(payload) is dict else {"invalidEvent": payload},
        parked_reason=_clip("invalid event: " + "; ".join(problems), MAX_REASON),
    )


# --- the walk ----------------------------------------------------------------------------


def _string_problem(text: str) -> str | None:
    if len(text) > MAX_STRING:
        return f"is longer than {MAX_STRING:,} characters"
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains a lone surrogate"
    return None


def _problem(value: Any, depth: int) -> tuple[list[Any], str] | None:
    """The first thing in `value` (at nesting level `depth`) that must not be stored or
    handled: (its path, innermost key first; what is wrong). None when all is well."""
    kind = type(value)
    if kind is dict or kind is list:
        if depth > MAX_DEPTH:
            return [], f"is nested deeper than {MAX_DEPTH} levels"
        for key, item in value.items() if kind is dict else enumerate(value):
            # Strings, keys included, are most of an event: checked here, without a call,
            # unless something is wrong.
            if kind is dict and (len(key) > MAX_STRING or "\x00" in key or not key.isascii()) and (
                what := _string_problem(key)
            ):
                return [], f"has a key that {what}"
            item_kind = type(item)
            if item_kind is str:
                if len(item) > MAX_STRING or "\x00" in item or not item.isascii():
                    what = _string_problem(item)
                    if what is not None:
                        return [key], what
            elif item_kind in _CONTAINERS_AND_ODD_NUMBERS:
                found = _problem(item, depth + 1)
                if found is not None:
                    found[0].append(key)
                    return found
        return None
    if kind is str:
        what = _string_problem(value)
        return None if what is None else ([], what)
    if kind is float:
        return None if math.isfinite(value) else ([], "is a number that is not finite")
    if kind is _Unreadable:
        return [], f"is an integer of {len(value):,} digits (too long to read)"
    return None


_CONTAINERS_AND_ODD_NUMBERS = frozenset({dict, list, float, _Unreadable})


def _deeper_than(value: Any, levels: int) -> bool:
    kind = type(value)
    if kind is not dict and kind is not list:
        return False
    return levels <= 0 or any(_deeper_than(item, levels - 1) for item in (value.values() if kind is dict else value))


def _path_text(reversed_path: list[Any]) -> str:
    """`message.emojis[0].index`: keys made printable (they end up in logs and last_error)."""
    text = ""
    for key in reversed(reversed_path):
        if type(key) is int:
            text += f"[{key}]"
        else:
            key = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", _printable(key))
            text += f"{'.' if text else ''}{_clip(key, 40)}"
    return _clip(text, 200) if text else "the event"


_CONTROL = re.compile("[\x00-\x1f\x7f]")


# --- what a parked event keeps -----------------------------------------------------------


def sanitised(value: Any, depth: int = 1) -> Any:
    """A copy both PostgreSQL JSONB and SQLite store: NUL and lone surrogates written as
    `\\u0000`-style text, strings cut at MAX_STRING, levels below MAX_DEPTH and numbers that
    are not finite replaced by a marker."""
    kind = type(value)
    if kind is str:
        return _clip(_printable(value), MAX_STRING)
    if kind is dict or kind is list:
        if depth > MAX_DEPTH:
            return f"[cut: nested deeper than {MAX_DEPTH} levels]"
        if kind is list:
            return [sanitised(item, depth + 1) for item in value]
        return {_clip(_printable(key), MAX_STRING): sanitised(item, depth + 1) for key, item in value.items()}
    if kind is float and not math.isfinite(value):
        return f"[cut: {value!r} is not a JSON number]"
    if kind is _Unreadable:
        return f"[cut: a number of {len(value):,} digits]"
    return value


def _printable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…[cut: {len(text) - limit:,} more characters]"


# --- keys for events without a usable id -------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:48]


def _fingerprint(value: Any) -> bytes:
    """A canonical, unambiguous encoding of a JSON value (object keys sorted), built without
    recursion: the value may be nested hundreds of levels deep."""
    out = bytearray()
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            out += b"{%d" % len(item)
            for key in sorted(item, reverse=True):
                stack.append(item[key])
                stack.append(_Key(key))
        elif kind is list:
            out += b"[%d" % len(item)
            stack.extend(reversed(item))
        elif kind is str or kind is _Key or kind is _Unreadable:
            data = item.encode("utf-8", "surrogatepass")
            out += b"%s%d:%s" % ({str: b"s", _Key: b"k", _Unreadable: b"n"}[kind], len(data), data)
        else:  # int, float, bool, None
            out += b"v" + repr(item).encode() + b";"
    return bytes(out)


class _Key(str):
    pass


# --- the slow path: bodies too deep (or with numbers too long) for json.loads ------------

# A string (its closing quote optional, so an unterminated one ends the scan in linear
# time), or a run of opening or of closing brackets.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[{][\[{\s]*|[\]}][\]}\s]*', re.DOTALL)
_WHITESPACE = b" \t\n\r"


def _cut_deep(body: bytes, limit: int) -> bytes:
    """The body with every object or array below nesting level `limit` replaced by `null`,
    found by scanning (strings skipped, brackets counted) rather than parsing. Malformed
    input gives malformed output, which json.loads then refuses."""
    out = []
    depth = 0
    cut_from = None  # where the subtree being cut starts
    kept = 0  # body[:kept] is already in `out`
    for match in _TOKEN.finditer(body):
        run = match.group()
        if run[0] == 0x22:  # a string: brackets inside it do not count
            continue
        count = len(run.translate(None, _WHITESPACE))
        if run[0] in b"[{":
            if cut_from is None and depth + count > limit:
                cut_from = match.start() + _nth_bracket(run, limit - depth)
            depth += count
        else:
            if cut_from is not None and depth - count <= limit:
                out += [body[kept:cut_from], b"null"]
                kept, cut_from = match.start() + _nth_bracket(run, depth - limit - 1) + 1, None
            depth -= count
            if depth < 0:
                break
    if cut_from is not None:
        out += [body[kept:cut_from], b"null"]
        return b"".join(out)  # never closed: malformed, and stays so
    out.append(body[kept:])
    return b"".join(out)


def _nth_bracket(run: bytes, n: int) -> int:
    """Where in a run of brackets (maybe with whitespace between them) its n-th one is, from 0."""
    if len(run.translate(None, _WHITESPACE)) == len(run):
        return n
    return [i for i, byte in enumerate(run) if byte not in _WHITESPACE][n]


def _read_int(text: str) -> int | _Unreadable:
    try:
        return int(text)
    except ValueError:
        return _Unreadable(text)
