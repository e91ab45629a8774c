"""Template filters: times in the shop's time zone, in the reader's language."""

from __future__ import annotations

from datetime import datetime, timedelta

import jinja2


@jinja2.pass_context
def when(jinja_context, value: datetime | None) -> str:
    """2026-12-05 14:03, shop time."""
    if value is None:
        return "—"
    ctx = jinja_context["ctx"]
    return value.astimezone(ctx.timezone).strftime("%Y-%m-%d %H:%M")


@jinja2.pass_context
def date(jinja_context, value: datetime | None) -> str:
    if value is None:
        return "—"
    ctx = jinja_context["ctx"]
    local = value.astimezone(ctx.timezone)
    if ctx.locale == "en":
        return local.strftime("%a %d %b %Y")
    weekday = "月火水木金土日"[local.weekday()]
    return f"{local.year}年{local.month}月{local.day}日({weekday})"


@jinja2.pass_context
def ago(jinja_context, value: datetime | None) -> str:
    """How long ago: たった今, 5分前, 3時間前, 2日前."""
    if value is None:
        return "—"
    ctx = jinja_context["ctx"]
    seconds = max(0, int((ctx.now - value).total_seconds()))
    if seconds < 60:
        return ctx.t("common.just_now")
    if seconds < 3600:
        return ctx.t("common.minutes_ago", n=seconds // 60)
    if seconds < 86_400:
        return ctx.t("common.hours_ago", n=seconds // 3600)
    return ctx.t("common.days_ago", n=seconds // 86_400)


@jinja2.pass_context
def duration(jinja_context, seconds: float | None) -> str:
    """A wait: 12分, 1時間5分."""
    if seconds is None:
        return "—"
    ctx = jinja_context["ctx"]
    minutes = int(seconds) // 60
    if minutes < 1:
        return ctx.t("common.under_a_minute")
    if minutes < 60:
        return ctx.t("common.minutes", n=minutes)
    return ctx.t("common.hours_minutes", h=minutes // 60, m=minutes % 60)


@jinja2.pass_context
def clock(jinja_context, value: datetime | None) -> str:
    """14:03, shop time (a chat message's time; the day is shown above it)."""
    if value is None:
        return "—"
    return value.astimezone(jinja_context["ctx"].timezone).strftime("%H:%M")


def number(value: int) -> str:
    return f"{value:,}"


def size(value: int | None) -> str:
    """A file's size: 512 B, 2.0 KB, 3.4 MB."""
    if not isinstance(value, int) or value < 0:
        return ""
    if value < 1024:
        return f"{value} B"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KB"
    return f"{value / 1024 / 1024:.1f} MB"


@jinja2.pass_context
def last_day(jinja_context, value: datetime | None) -> str:
    """The last day an exclusive end covers (a coupon valid until 2027-01-01 00:00 is good
    through 2026年12月31日), shop time."""
    return date(jinja_context, value - timedelta(microseconds=1) if value is not None else None)


FILTERS = {
    "when": when, "date": date, "ago": ago, "duration": duration, "clock": clock, "number": number, "size": size,
    "last_day": last_day,
}
