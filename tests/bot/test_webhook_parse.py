"""The webhook reads a body with orjson where that gives exactly what json.loads gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna.bot.webhook_validation import NotAWebhook, _parse, _problem, read_events


def _same(body: bytes) -> None:
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError) as error:
        with pytest.raises(type(error)):
            _parse(body)
        return
    got, plain = _parse(body)
    assert repr(got) == repr(expected)  # repr: int vs float, -0.0 and nan count
    if plain:  # the walk is skipped for a plain body: it would have found nothing
        assert _problem(got, 1) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"events":[]}',
        b'{"n":18446744073709551615}',
        b'{"n":18446744073709551616}',  # beyond 64 bits: orjson would make a float of it
        b'{"n":-9223372036854775809}',
        b'{"n":123456789012345678901234567890}',
        b'{"s":"1234567890123456789012"}',
        b'{"n":1e400}',
        b'{"n":-1e400}',
        b'{"n":NaN}',
        b'{"n":Infinity}',
        b'{"n":-0.0}',
        b'{"n":1.5e-400}',
        b'{"s":"\\ud800"}',
        b'{"s":"\\u0000"}',
        b'{"s":"\xed\xa0\x80"}',
        b'\xef\xbb\xbf{"events":[]}',
        '{"events":[]}'.encode("utf-16"),
        b'{"a":1,"a":2}',
        b"[" * 150 + b"]" * 150,
        b"[" * 1_010 + b"]" * 1_010,  # json: RecursionError; orjson would read it
        b'{"events":[1,]}',
        b"",
        b"\x80",
    ],
)
def test_parse_reads_bodies_as_json_does(body):
    _same(body)


_JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    ),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None, database=None)
@given(value=_JSON)
def test_parse_agrees_with_json_on_any_value(value):
    _same(json.dumps(value).encode())
    _same(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def test_a_body_with_a_huge_integer_keeps_it_exact():
    body = b'{"destination":"U0","events":[{"type":"x","webhookEventId":"01J","timestamp":1,"n":12345678901234567890123}]}'
    (event,) = read_events(body)
    assert event.payload["n"] == 12345678901234567890123


def test_not_json_is_still_not_a_webhook():
    with pytest.raises(NotAWebhook):
        read_events(b'{"events":[NaN')
