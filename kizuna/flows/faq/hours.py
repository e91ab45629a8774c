"""Business hours: a weekly schedule plus holidays, in the shop's time zone.

Stored form (``inquiry_settings.weekly_hours`` / ``holidays``)::

    {"mon": [["10:00", "20:00"]], "tue": [["10:00", "13:00"], ["14:00", "20:00"]], ..., "sun": []}
    ["2026-12-31", "2027-01-01"]

A day that is missing or empty is closed; a holiday is closed all day. An interval
closes at or before midnight ("24:00" is allowed); a shop open past midnight writes
two intervals (Fri 18:00-24:00, Sat 00:00-02:00). No schedule at all (None) means the
hours were never set: the bot then never says it is outside business hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVALS_PER_DAY = 4
MAX_HOLIDAYS = 400
_LOOKAHEAD_DAYS = 400
_WEEKDAYS_JA = "月火水木金土日"


class HoursInvalid(ValueError):
    pass


def _minutes(value: object, where: str) -> int:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":" or not (value[:2] + value[3:]).isdigit():
        raise HoursInvalid(f"{where}: {value!r} is not a time like 09:30")
    hours, minutes = int(value[:2]), int(value[3:])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise HoursInvalid(f"{where}: {value!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


@dataclass(frozen=True)
class Schedule:
    weekly: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): (open, close) minutes
    holidays: frozenset[date]
    tz: tzinfo

    def _intervals(self, day: date) -> tuple[tuple[int, int], ...]:
        return () if day in self.holidays else self.weekly[day.weekday()]

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self._intervals(local.date()))

    def next_opening(self, now: datetime) -> datetime | None:
        """When the shop next opens (aware, in the shop's zone); None if it is open now
        or never opens again within a year."""
        local = now.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        for offset in range(_LOOKAHEAD_DAYS):
            day = local.date() + timedelta(days=offset)
            for start, end in self._intervals(day):
                if offset == 0:
                    if start <= minute < end:
                        return None
                    if start <= minute:
                        continue
                if start >= 24 * 60:
                    continue
                return datetime.combine(day, time(start // 60, start % 60), tzinfo=self.tz)
        return None


def parse_schedule(weekly: dict | None, holidays: list | tuple | None, timezone: str = "Asia/Tokyo") -> Schedule | None:
    """Validate the stored/API form; None when no weekly schedule is set. Raises HoursInvalid."""
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursInvalid(f"unknown time zone {timezone!r}") from None
    if weekly is None:
        return None
    if not isinstance(weekly, dict):
        raise HoursInvalid("weekly must be an object with the keys mon ... sun")
    unknown = [key for key in weekly if key not in DAYS]
    if unknown:
        raise HoursInvalid(f"weekly: unknown day {unknown[0]!r} (use {', '.join(DAYS)})")
    days = []
    for name in DAYS:
        raw = weekly.get(name) or []
        if not isinstance(raw, list) or len(raw) > MAX_INTERVALS_PER_DAY:
            raise HoursInvalid(f"weekly.{name}: a list of at most {MAX_INTERVALS_PER_DAY} [open, close] pairs")
        intervals = []
        for index, pair in enumerate(raw):
            where = f"weekly.{name}[{index}]"
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise HoursInvalid(f"{where}: must be [open, close], e.g. [\"10:00\", \"20:00\"]")
            start, end = _minutes(pair[0], where), _minutes(pair[1], where)
            if end <= start:
                raise HoursInvalid(f"{where}: closes before it opens (past midnight: split it at 24:00)")
            intervals.append((start, end))
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            if start < end:
                raise HoursInvalid(f"weekly.{name}: intervals overlap")
        days.append(tuple(intervals))
    holiday_dates = set()
    raw_holidays = list(holidays or ())
    if len(raw_holidays) > MAX_HOLIDAYS:
        raise HoursInvalid(f"holidays: at most {MAX_HOLIDAYS} dates")
    for value in raw_holidays:
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError(value)
            holiday_dates.add(date.fromisoformat(value))
        except ValueError:
            raise HoursInvalid(f"holidays: {value!r} is not a date like 2026-12-31") from None
    return Schedule(tuple(days), frozenset(holiday_dates), tz)


def canonical(weekly: dict | None) -> dict | None:
    """The stored form of a valid weekly schedule: every day present, intervals sorted."""
    if weekly is None:
        return None
    return {name: sorted([list(pair) for pair in (weekly.get(name) or [])]) for name in DAYS}


def describe_when(opening: datetime, now: datetime, locale: str) -> str:
    """「本日 10:00」 or 「翌営業日 12月1日（月） 10:00」 (en: "today at 10:00", "Mon, Dec 1 at 10:00")."""
    local_now = now.astimezone(opening.tzinfo)
    clock = f"{opening:%H:%M}"
    if opening.date() == local_now.date():
        return f"today at {clock}" if locale == "en" else f"本日 {clock}"
    if locale == "en":
        return f"{opening:%a}, {opening:%b} {opening.day} at {clock}"
    return f"翌営業日 {opening.month}月{opening.day}日（{_WEEKDAYS_JA[opening.weekday()]}） {clock}"
