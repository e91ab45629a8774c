"""Hostile webhook bodies (issue 12): validly signed, sent over real HTTP from the emulator.

A bad *event* never spoils a good *body*: the body is answered 200, the good event beside
the bad one is stored and processed (its customer gets the bot's reply), the bad one is
stored parked with its reason and never processed. Only a body that is not a LINE webhook
at all is refused (400), and nothing answers 500.
"""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna.bot.webhook import signature_for
from kizuna.storage.models import InboundEvent, Interaction
from tests.conftest import CHANNEL_SECRET, eventually

DESTINATION = "U" + "f" * 32
DEEP = "@@DEEP@@"  # a placeholder in a JSON text, replaced by raw nested brackets


def body_of(*events: dict | bytes) -> bytes:
    """A webhook body; an event given as bytes goes in as is (raw JSON text)."""
    parts = [event if isinstance(event, bytes) else json.dumps(event).encode() for event in events]
    return b'{"destination":"%s","events":[%s]}' % (DESTINATION.encode(), b",".join(parts))


def deep(event: dict, levels: int, *, key: str = "x") -> bytes:
    text = json.dumps({**event, key: DEEP}).encode()
    return text.replace(json.dumps(DEEP).encode(), b"[" * levels + b"]" * levels)


def with_raw_field(event: dict, key: str, raw: bytes) -> bytes:
    text = json.dumps({**event, key: DEEP}).encode()
    return text.replace(json.dumps(DEEP).encode(), raw)


# Each case: (bad event built from a well-formed one, words of the reason it is parked for,
# the stored key is LINE's webhookEventId).
CASES = {
    "NUL in a text": (lambda e: {**e, "message": {**e["message"], "text": "ab\u0000cd"}}, "message.text contains a NUL character", True),
    "NUL in webhookEventId": (lambda e: {**e, "webhookEventId": e["webhookEventId"] + "\u0000"}, "webhookEventId contains a NUL character", False),
    "lone surrogate (escaped)": (lambda e: {**e, "message": {**e["message"], "text": "x\ud800y"}}, "message.text contains a lone surrogate", True),
    "lone surrogate (raw bytes)": (
        lambda e: json.dumps({**e, "message": {**e["message"], "text": "@@S@@"}}).encode().replace(b"@@S@@", b"\xed\xa0\x80"),
        "message.text contains a lone surrogate", True,
    ),
    "lone surrogate in a key": (lambda e: {**e, "message": {**e["message"], "\udc00": 1}}, "message has a key that contains a lone surrogate", True),
    "timestamp 1e20": (lambda e: with_raw_field(e, "timestamp", b"1e20"), "timestamp must be an integer from 0 to", True),
    "timestamp 10**20": (lambda e: {**e, "timestamp": 10**20}, "timestamp must be an integer from 0 to", True),
    "timestamp a float": (lambda e: {**e, "timestamp": 1790000000000.5}, "timestamp must be an integer", True),
    "timestamp a bool": (lambda e: {**e, "timestamp": True}, "timestamp must be an integer", True),
    "timestamp missing": (lambda e: {k: v for k, v in e.items() if k != "timestamp"}, "timestamp is missing", True),
    "JSON 5,000 deep in an event": (lambda e: deep(e, 5_000), "x[0][0][0]", True),
    "JSON 100,000 deep in an event": (lambda e: deep(e, 100_000), "is nested deeper than 32 levels", True),
    "JSON 40 deep in an event": (lambda e: deep(e, 40), "is nested deeper than 32 levels", True),
    "userId of 65 characters": (lambda e: {**e, "source": {"type": "user", "userId": "U" + "a" * 64}}, "source.userId must be a string of 1 to 64 characters", True),
    "userId a number": (lambda e: {**e, "source": {"type": "user", "userId": 12345}}, "source.userId must be a string", True),
    "userId an object": (lambda e: {**e, "source": {"type": "user", "userId": {"id": "U1"}}}, "source.userId must be a string", True),
    "source a string": (lambda e: {**e, "source": "user"}, "source must be an object", True),
    "message a string": (lambda e: {**e, "message": "hello"}, "message must be an object", True),
    "integer of 5,000 digits": (lambda e: with_raw_field(e, "n", b"7" * 5_000), "n is an integer of 5,000 digits", True),
    "NaN": (lambda e: with_raw_field(e, "n", b"NaN"), "n is a number that is not finite", True),
    "1e400": (lambda e: with_raw_field(e, "n", b"-1e400"), "n is a number that is not finite", True),
    "text of 10,001 characters": (lambda e: {**e, "message": {**e["message"], "text": "長" * 10_001}}, "message.text is longer than 10,000 characters", True),
    "type of 41 characters": (lambda e: {**e, "type": "m" * 41}, "type must be a string of 1 to 40 characters", True),
    "webhookEventId missing": (lambda e: {k: v for k, v in e.items() if k != "webhookEventId"}, "webhookEventId is missing", False),
    "not an object": (lambda e: b'"just a string"', "the event must be an object", False),
}


async def _rows(kizuna, *where) -> list[InboundEvent]:
    async with kizuna.sessions() as session:
        return list((await session.execute(sa.select(InboundEvent).where(*where).order_by(InboundEvent.id))).scalars())


async def _parked(kizuna) -> list[dict]:
    status, page = await kizuna.api("GET", "/api/v1/events?status=parked")
    assert status == 200, page
    return page["items"]


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_event_is_parked_and_its_good_sibling_is_answered(kizuna, case):
    make_bad, reason, keyed_by_id = CASES[case]
    user = kizuna.emulator.add_user(display_name="花子")
    good = kizuna.emulator.make_event("message", user.user_id, text="こんにちは")
    bad_base = kizuna.emulator.make_event("message", user.user_id, text="壊れた")
    bad_base.pop("replyToken")  # nothing may answer the bad one
    body = body_of(good, make_bad(bad_base))

    result = await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body), events=[good])
    assert result.status == 200, result.body

    # The good event is processed: the customer gets the bot's reply, once.
    [reply] = await kizuna.emulator.wait_for_messages(user.user_id, 1)
    assert reply.via == "reply"
    await eventually(lambda: _status_of(kizuna, good["webhookEventId"], "done"), what="good event done")

    # The bad one is parked with its reason, listed by the API, and never processed.
    [parked] = await _parked(kizuna)
    assert parked["last_error"].startswith("invalid event: ") and reason in parked["last_error"], parked["last_error"]
    assert parked["attempts"] == 0
    if keyed_by_id:
        assert parked["webhook_event_id"] == bad_base["webhookEventId"]
    else:
        assert parked["webhook_event_id"].startswith("sha256:")
    for text in _strings(parked["payload"]):  # a sanitised copy: no NUL, no lone surrogate
        assert "\x00" not in text and text.encode("utf-8")
    [row] = await _rows(kizuna, InboundEvent.status == "parked")
    assert await _count(kizuna, Interaction, Interaction.inbound_event_id == row.id) == 0
    timeline = await kizuna.timeline(user.user_id)
    assert [(r["direction"], r["text"]) for r in timeline if r["direction"] == "in"] == [("in", "こんにちは")]
    assert len(kizuna.emulator.messages_to(user.user_id)) == 1

    # A redelivery of the whole body stores nothing twice, the bad event included.
    again = await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))
    assert again.status == 200
    assert len(await _rows(kizuna)) == 2


async def test_the_sanitised_copy_keeps_what_can_be_kept(kizuna):
    user = kizuna.emulator.add_user(display_name="太郎")
    event = kizuna.emulator.make_event("message", user.user_id, text="a\u0000b\ud800c")
    event["long"] = "x" * 10_050
    body = body_of(deep(event, 50, key="deep"))
    assert (await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))).status == 200
    [parked] = await _parked(kizuna)
    payload = parked["payload"]
    assert payload["message"]["text"] == "a\\u0000b\\ud800c"
    assert payload["long"].startswith("x" * 10_000) and payload["long"].endswith("[cut: 50 more characters]")
    level = payload["deep"]
    for _ in range(31):  # the event is level 1: 31 more levels are kept
        [level] = level
    assert level == "[cut: nested deeper than 32 levels]"
    assert parked["source_key"] == user.user_id  # its userId was fine

    # Invalid as LINE sent it: an admin's retry is refused, it would not become valid.
    status, refused = await kizuna.api("POST", f"/api/v1/events/{parked['id']}/retry")
    assert status == 409 and refused["error"]["code"] == "invalid_event"
    assert [row["status"] for row in await _parked(kizuna)] == ["parked"]


async def test_two_long_ids_with_a_shared_prefix_are_two_events(kizuna):
    user = kizuna.emulator.add_user(display_name="花子")
    prefix = "01" + "X" * 62
    first = {**kizuna.emulator.make_event("follow", user.user_id), "webhookEventId": prefix + "-first"}
    second = {**kizuna.emulator.make_event("follow", user.user_id), "webhookEventId": prefix + "-second"}
    body = body_of(first, second)
    assert (await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))).status == 200
    parked = await _parked(kizuna)
    assert len(parked) == 2 and len({item["webhook_event_id"] for item in parked}) == 2
    assert {item["payload"]["webhookEventId"] for item in parked} == {prefix + "-first", prefix + "-second"}
    # Each is still one event when LINE redelivers it.
    for event in (first, second):
        redelivered = {**event, "deliveryContext": {"isRedelivery": True}}
        again = body_of(redelivered)
        assert (await kizuna.emulator.post_webhook(again, signature_for(CHANNEL_SECRET, again))).status == 200
    assert len(await _parked(kizuna)) == 2


async def test_an_event_without_id_redelivered_is_one_event(kizuna):
    user = kizuna.emulator.add_user(display_name="花子")
    event = kizuna.emulator.make_event("follow", user.user_id)
    del event["webhookEventId"]
    for redelivery in (False, True, True):
        body = body_of({**event, "deliveryContext": {"isRedelivery": redelivery}})
        assert (await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))).status == 200
    assert len(await _parked(kizuna)) == 1


@pytest.mark.parametrize("shape", ["outside the events", "the whole body"])
async def test_a_body_100000_deep_is_refused_without_a_traceback(kizuna, caplog, shape):
    user = kizuna.emulator.add_user(display_name="花子")
    good = kizuna.emulator.make_event("message", user.user_id, text="こんにちは")
    nested = b"[" * 100_000 + b"]" * 100_000
    if shape == "outside the events":
        body = body_of(good).replace(b'"events":', b'"padding":%s,"events":' % nested)
    else:
        body = nested
    with caplog.at_level(logging.DEBUG):
        result = await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))
    assert result.status == 400
    assert "message" in json.loads(result.body)
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    assert await _rows(kizuna) == []


async def test_events_that_are_not_objects_do_not_spoil_the_body(kizuna):
    user = kizuna.emulator.add_user(display_name="花子")
    good = kizuna.emulator.make_event("message", user.user_id, text="こんにちは")
    body = body_of(b"1", b"null", b"[]", good, b'"x"', b"2")
    result = await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body), events=[good])
    assert result.status == 200
    await kizuna.emulator.wait_for_messages(user.user_id, 1)
    parked = await _parked(kizuna)
    assert sorted(json.dumps(item["payload"]["invalidEvent"]) for item in parked) == sorted(
        json.dumps(value) for value in (1, None, [], "x", 2)
    )
    assert {item["last_error"] for item in parked} == {"invalid event: the event must be an object"}


# --- property: whatever the events hold, never a 500 and never an event stored twice -------------


def _texts() -> st.SearchStrategy[str]:
    any_character = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
    nasty = st.sampled_from(["", "\x00", "\ud800", "\udfff", "U" + "0" * 32, "x" * 65, "y" * 10_001, "message", "follow"])
    return st.one_of(st.text(any_character, max_size=12), nasty)


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True), _texts(),
)
_JSONISH = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_texts(), children, max_size=3)),
    max_leaves=12,
)
_LINE_LIKE = st.fixed_dictionaries(
    {
        "type": st.one_of(st.sampled_from(["message", "follow", "unfollow", "postback", "somethingNew"]), _JSONISH),
        "timestamp": st.one_of(st.integers(min_value=-1, max_value=10**14), _JSONISH),
        "source": st.one_of(
            st.fixed_dictionaries({"type": st.just("user"), "userId": st.one_of(_texts(), _JSONISH)}),
            st.fixed_dictionaries({"type": st.just("group"), "groupId": _texts(), "userId": _texts()}),
            _JSONISH,
        ),
        "deliveryContext": st.one_of(st.fixed_dictionaries({"isRedelivery": st.booleans()}), _JSONISH),
    },
    optional={
        "message": st.one_of(st.fixed_dictionaries({"type": st.just("sticker"), "id": _texts()}), _JSONISH),
        "postback": _JSONISH,
        "replyToken": _JSONISH,
        "mode": st.sampled_from(["active", "standby"]),
        "extra": _JSONISH,
    },
)


@st.composite
def _event_texts(draw) -> bytes:
    """One event as raw JSON text: LINE-like with odd values, anything JSON-ish, or deep."""
    kind = draw(st.sampled_from(["line", "line", "line", "jsonish", "deep"]))
    if kind == "jsonish":
        return json.dumps(draw(_JSONISH)).encode()
    event = draw(_LINE_LIKE)
    # Usually a fresh id (so stored-once is checkable), sometimes an odd one.
    event["webhookEventId"] = draw(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u) * 3), _JSONISH))
    if kind == "deep":
        return deep(event, draw(st.integers(min_value=30, max_value=3_000)))
    return json.dumps(event).encode()


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events=st.lists(_event_texts(), max_size=4))
async def test_random_events_never_give_500_nor_duplicates(kizuna, events):
    body = body_of(*events)
    before = len(await _rows(kizuna))
    first = await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))
    assert first.status == 200, (first.status, first.body)
    after = len(await _rows(kizuna))
    assert after - before <= len(events)
    # Each event whose id is usable is stored exactly once (and ids are never cut).
    for raw in events:
        try:
            event = json.loads(raw)
        except (RecursionError, ValueError):
            continue
        event_id = event.get("webhookEventId") if isinstance(event, dict) else None
        if isinstance(event_id, str) and 0 < len(event_id) <= 64 and "\x00" not in event_id and event_id.isascii():
            assert len(await _rows(kizuna, InboundEvent.webhook_event_id == event_id)) == 1
    # The same body again (LINE's redelivery) stores nothing.
    again = await kizuna.emulator.post_webhook(body, signature_for(CHANNEL_SECRET, body))
    assert again.status == 200
    assert len(await _rows(kizuna)) == after


async def _status_of(kizuna, webhook_event_id: str, status: str) -> bool:
    rows = await _rows(kizuna, InboundEvent.webhook_event_id == webhook_event_id)
    return bool(rows) and rows[0].status == status


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


async def _count(kizuna, model, *where) -> int:
    async with kizuna.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(model).where(*where))).scalar_one()
