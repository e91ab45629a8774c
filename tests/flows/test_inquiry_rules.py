"""Keyword-rule patterns (the regex guard), business-hours arithmetic, quick-reply labels."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from kizuna.flows.faq.hours import HoursInvalid, describe_when, parse_schedule
from kizuna.flows.faq.inquiry import truncate_label
from kizuna.flows.faq.rules import MAX_TEXT, PatternRejected, check_pattern, compile_rule, first_match

JST = timezone(timedelta(hours=9))


@pytest.mark.parametrize("pattern", [
    r"送料", r"(送料|配送料).*(無料|タダ)", r"\d{3}-\d{4}", r"[0-9]+円", r"^予約", r"キャンセル$", r"x.*y",
    r"a.{0,50}b.{0,50}c", r"(?=.*x)y", r"(?:お|ご)?予約", r"a{1,10}.*b",
])
def test_safe_patterns_are_accepted_and_fast_on_hostile_text(pattern):
    check_pattern("regex", pattern)
    compiled = re.compile(pattern, re.IGNORECASE)
    for text in ("a" * MAX_TEXT, "x" * MAX_TEXT, "ab" * (MAX_TEXT // 2), "予" * MAX_TEXT, "1" * MAX_TEXT):
        started = time.perf_counter()
        compiled.search(text)
        assert time.perf_counter() - started < 0.2, (pattern, text[:5])


@pytest.mark.parametrize("pattern, words", [
    (r"(a+)+$", "quantifier inside"),
    (r"(a*)*b", "quantifier inside"),
    (r"(\d+\s?)+円", "quantifier inside"),
    (r"(a|ab)*c", "alternatives inside"),
    (r"(a|aa)+", "alternatives inside"),
    (r"a*a*b", "too slow"),
    (r"\w+\s*\w+", "too slow"),
    (r".*送料", "leading .*"),
    (r"送料.*", "trailing .*"),
    (r"(\w)\1", "back-references"),
    (r"(a)?(?(1)b|c)", "back-references"),
    (r"a{1000}", "above 100"),
    (r"[", "not a valid"),
    ("x" * 201, "longer than"),
    ("", "empty"),
])
def test_dangerous_or_broken_patterns_are_refused(pattern, words):
    with pytest.raises(PatternRejected) as caught:
        check_pattern("regex", pattern)
    assert words in str(caught.value)


def _rule(id, match_type, pattern, priority=0):
    return compile_rule(SimpleNamespace(id=id, match_type=match_type, pattern=pattern, reply_text="r", flow_action=None, add_tag=None,
                                        priority=priority))


def test_matching_is_on_normalised_text():
    rules = [_rule(1, "exact", "ＳＡＬＥ"), _rule(2, "contains", "ｸｰﾎﾟﾝ"), _rule(3, "regex", r"[０-９]{3}")]
    assert first_match(rules, " sale ").id == 1
    assert first_match(rules, "sale?") is None or first_match(rules, "sale?").id != 1
    assert first_match(rules, "クーポンください").id == 2
    assert first_match(rules, "番号は123です").id == 3
    assert first_match(rules, "x" * 2000 + "123") is None  # only the first 1,000 characters are looked at


WEEK = {"mon": [["10:00", "19:00"]], "tue": [["10:00", "19:00"]], "wed": [["10:00", "19:00"]],
        "thu": [["10:00", "19:00"]], "fri": [["10:00", "19:00"]], "sat": [["10:00", "13:00"], ["14:00", "24:00"]]}


@pytest.mark.parametrize("now, is_open, opening", [
    ((2026, 12, 1, 9, 59), False, (2026, 12, 1, 10, 0)),  # Tuesday, before opening
    ((2026, 12, 1, 10, 0), True, None),
    ((2026, 12, 1, 18, 59), True, None),
    ((2026, 12, 1, 19, 0), False, (2026, 12, 2, 10, 0)),
    ((2026, 12, 5, 13, 30), False, (2026, 12, 5, 14, 0)),  # Saturday break
    ((2026, 12, 5, 23, 59), True, None),  # open until midnight
    ((2026, 12, 6, 12, 0), False, (2026, 12, 8, 10, 0)),  # Sunday; Monday 7th is a holiday
    ((2026, 12, 30, 20, 0), False, (2027, 1, 4, 10, 0)),  # year-end holidays
])
def test_opening_hours(now, is_open, opening):
    schedule = parse_schedule(WEEK, ["2026-12-07", "2026-12-31", "2027-01-01", "2027-01-02"])
    moment = datetime(*now, tzinfo=JST).astimezone(timezone.utc)  # stored and compared in UTC
    assert schedule.is_open(moment) is is_open
    expected = datetime(*opening, tzinfo=JST) if opening else None
    assert schedule.next_opening(moment) == expected


def test_never_open_and_never_set():
    assert parse_schedule(None, []) is None
    closed = parse_schedule({}, [])
    assert closed.next_opening(datetime(2026, 12, 1, tzinfo=JST)) is None


@pytest.mark.parametrize("weekly, holidays", [
    ({"mon": [["19:00", "10:00"]]}, []), ({"mon": [["10:00", "24:30"]]}, []), ({"xyz": []}, []),
    ({"mon": "10:00-19:00"}, []), ({"mon": [["9:00", "10:00"]]}, []), ({}, ["2026-13-01"]), ([], []),
])
def test_bad_schedules(weekly, holidays):
    with pytest.raises(HoursInvalid):
        parse_schedule(weekly, holidays)


def test_when_a_person_replies_in_words():
    now = datetime(2026, 12, 5, 18, 30, tzinfo=JST)
    assert describe_when(datetime(2026, 12, 5, 19, 0, tzinfo=JST), now, "ja") == "本日 19:00"
    assert describe_when(datetime(2026, 12, 8, 10, 0, tzinfo=JST), now, "ja") == "翌営業日 12月8日（火） 10:00"
    assert describe_when(datetime(2026, 12, 8, 10, 0, tzinfo=JST), now, "en") == "Tue, Dec 8 at 10:00"


@pytest.mark.parametrize("text, label", [
    ("送料はいくらですか", "送料はいくらですか"),
    ("営業時間は?", "営業時間は"),
    ("注文してから届くまで何日かかりますか", "注文してから届くまで何日かかりますか"),
    ("クーポンはセール価格の商品や他のクーポンと併用できますか", "クーポンはセール価格の商品や他の…"),
    ("ご注文の、お届け先を変更したいのですが", "ご注文の、お届け先を変更したいのですが"),
    ("ご注文いただいた商品のお届け先の住所を変更したい", "ご注文いただいた商品のお届け先の住所を…"),
    ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ABCDEFGHIJKLMNOPQRS…"),
    ("😀😀😀😀😀😀😀😀😀😀😀", "😀😀😀😀😀😀😀😀😀…"),
])
def test_quick_reply_labels_fit_in_20(text, label):
    assert truncate_label(text) == label
    assert len(label.encode("utf-16-le")) // 2 <= 20
