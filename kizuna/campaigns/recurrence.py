"""Recurring campaigns' rules (issue 15 §1 "recurring with a cron-like rule").

A rule is a standard five-field cron expression — minute hour day-of-month month day-of-week,
e.g. `0 10 * * 1` for Mondays at 10:00 — read in the shop's time zone. Parsing and stepping are
cronsim's (Debian cron's semantics: when both day fields are restricted, either matches).
Runs at most hourly: a rule firing more often would queue runs faster than a campaign ends, and
the frequency cap would silently drop most of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from kizuna.storage.errors import Invalid
from kizuna.storage.models import CAMPAIGN_RECURRENCE_MAX

MIN_SPACING = timedelta(hours=1)
WEEKDAYS_JA = "月火水木金土日"


def check(rule: object, *, zone: str, now: datetime, field: str = "recurrence") -> str:
    """The rule, trimmed, if it is a valid five-field cron rule running at most hourly; else Invalid."""
    if not isinstance(rule, str) or not rule.strip() or len(rule.strip()) > CAMPAIGN_RECURRENCE_MAX:
        raise Invalid(field, f"must be a cron rule of 1 to {CAMPAIGN_RECURRENCE_MAX} characters, e.g. 0 10 * * 1")
    rule = " ".join(rule.split())
    if len(rule.split(" ")) != 5:
        raise Invalid(field, "must have five fields: minute hour day month weekday, e.g. 0 10 * * 1 (Mondays 10:00)")
    try:
        first, second = next_runs(rule, after=now, zone=zone, count=2)
    except (CronSimError, StopIteration, ValueError) as error:
        raise Invalid(field, f"is not a valid cron rule ({error or 'it never runs'})") from None
    if second - first < MIN_SPACING:
        raise Invalid(field, "runs more often than hourly; a campaign can recur at most once an hour")
    return rule


def next_runs(rule: str, *, after: datetime, zone: str, count: int) -> list[datetime]:
    """The next `count` times the rule fires strictly after `after`, in UTC."""
    steps = CronSim(rule, after.astimezone(ZoneInfo(zone)))
    return [next(steps).astimezone(timezone.utc) for _ in range(count)]


def next_run(rule: str, *, after: datetime, zone: str) -> datetime:
    return next_runs(rule, after=after, zone=zone, count=1)[0]


def describe(rule: str) -> str:
    """cronsim's English wording of the rule (e.g. "At 10:00 on Monday"), for the English console."""
    try:
        return CronSim(rule, datetime.now(timezone.utc)).explain()
    except (CronSimError, ValueError):
        return rule


def label(when: datetime, zone: str) -> str:
    """A run's time as staff read it: 12/07(月) 10:00 in the shop's zone."""
    local = when.astimezone(ZoneInfo(zone))
    return f"{local:%m/%d}({WEEKDAYS_JA[local.weekday()]}) {local:%H:%M}"
