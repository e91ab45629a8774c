"""分析 (admins and marketers): the shop's figures drawn as charts - friends added and blocked
per day, registrations, the RFM grid (each cell opens the segment builder with that R and F),
sales by decile, F2 conversion and repeat rate by month, follows and blocks per friend-add source. The figures are
campaigns/analytics.py's; the page embeds them as JSON (`<script type="application/json">`,
escaped by `tojson`) and console/static/analytics.js draws them with the vendored Chart.js
(static/vendor/chart.umd.min.js, v4.6.2, MIT), so the CSP needs no inline script."""

from __future__ import annotations

from aiohttp import web

from kizuna.campaigns import analytics

from ..context import CONTEXT, db
from ..render import render
from ..routes import MARKETING, route

PERIODS = (30, 90)
MONTHS = 12


def _heat(count: int, top: int) -> int:
    """A cell's shade, 0 (none) to 5 (the busiest cell): classes, as the CSP allows no style attribute."""
    return 0 if not count else max(1, round(5 * count / top))


async def analytics_page(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    days = int(request.query["days"]) if request.query.get("days") in ("30", "90") else PERIODS[0]
    zone = ctx.timezone
    async with db(request) as session:
        friends = await analytics.friends_per_day(session, now=ctx.now, days=days, zone=zone)
        registrations = await analytics.registrations_per_day(session, now=ctx.now, days=days, zone=zone)
        grid = await analytics.rfm_grid(session, now=ctx.now)
        deciles = await analytics.sales_by_decile(session)
        f2 = await analytics.f2_by_first_month(session, now=ctx.now, months=MONTHS, zone=zone)
        repeat = await analytics.repeat_rate_by_month(session, now=ctx.now, months=MONTHS, zone=zone)
        sources = await analytics.follows_per_source(session)
    t = ctx.t
    day_labels = [t("analytics.day", month=item.day.month, day=item.day.day) for item in friends]
    month_labels = [t("analytics.month", year=item.month.year, month=item.month.month) for item in f2]

    def percent(items):
        return [round(item.rate * 100, 1) if item.rate is not None else None for item in items]

    charts = {
        "friends": {"type": "line", "labels": day_labels, "datasets": [
            {"label": t("analytics.follows"), "data": [item.values[0] for item in friends], "color": "green"},
            {"label": t("analytics.blocks"), "data": [item.values[1] for item in friends], "color": "red"}]},
        "registrations": {"type": "bar", "labels": day_labels, "datasets": [
            {"label": t("analytics.registrations"), "data": [item.values[0] for item in registrations], "color": "blue"}]},
        "deciles": {"type": "bar", "labels": [str(item.decile) for item in deciles], "x_title": t("analytics.decile.axis"), "datasets": [
            {"label": t("analytics.sales"), "data": [item.sales for item in deciles], "color": "green"}], "yen": True},
        "f2": {"type": "bar", "labels": month_labels, "percent": True, "datasets": [
            {"label": t("analytics.f2_rate"), "data": percent(f2), "color": "amber"}]},
        "repeat": {"type": "line", "labels": month_labels, "percent": True, "datasets": [
            {"label": t("analytics.repeat_rate"), "data": percent(repeat), "color": "blue"}]},
    }
    if sources:  # else the page says there is no source yet, with a link to make one
        # Source names are the shop's text: Chart.js draws them on the canvas, and tojson escapes the JSON.
        charts["sources"] = {"type": "bar", "labels": [item.name for item in sources], "datasets": [
            {"label": t("analytics.follows"), "data": [item.follows for item in sources], "color": "green"},
            {"label": t("analytics.blocks"), "data": [item.blocks for item in sources], "color": "red"}]}
    top = max(grid.values(), default=0)
    cells = [[(r, f, grid.get((r, f), 0), _heat(grid.get((r, f), 0), top)) for f in range(1, 6)] for r in range(5, 0, -1)]
    return render(request, "analytics.html", {
        "charts": charts, "has_sources": bool(sources), "days": days, "periods": PERIODS, "cells": cells,
        "totals": {"follows": sum(item.values[0] for item in friends), "blocks": sum(item.values[1] for item in friends),
                   "registrations": sum(item.values[0] for item in registrations),
                   "buyers": sum(grid.values()), "sales": sum(item.sales for item in deciles)},
    })


ROUTES = [
    route("GET", "/analytics", analytics_page, name="analytics", roles=MARKETING),
]
