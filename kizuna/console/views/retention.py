"""データ保持 (admins only): the retention policies (editable, checked by storage/retention.py), the
last purge runs with what each removed, a dry run and 「今すぐ実行」 (campaigns/retention.py, the
same run the workers do daily and `kizuna retention` does)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from kizuna.campaigns import retention as purge
from kizuna.storage import retention
from kizuna.storage.errors import Invalid
from kizuna.storage.models import RetentionTrigger, RetentionUnit

from ..context import CONTEXT, db, services_of, settings_of
from ..render import render
from ..routes import ADMIN_ONLY, route, see_other

NOTICES = ("saved", "ran", "ran_dry")
# A run from the console answers within this (the rest waits for the next run: `incomplete`).
CONSOLE_BUDGET = timedelta(seconds=20)


async def _page(request: web.Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> web.Response:
    async with db(request) as session:
        policies = await retention.policies(session)
        runs = await purge.recent_runs(session)
    notice = request.query.get("notice")
    return render(request, "retention.html", {
        "policies": policies, "runs": runs, "form": form, "error": error, "units": [str(unit) for unit in RetentionUnit],
        "targets": retention.TARGET_KEYS, "hour": getattr(settings_of(request), "retention_hour", 4),
        "notice": f"retention.{notice}" if notice in NOTICES else None,
    }, status=status)


async def retention_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def retention_save(request: web.Request) -> web.StreamResponse:
    """Every policy of the form checked first: one wrong value changes nothing (400 naming it)."""
    posted = await request.post()
    ctx = request[CONTEXT]
    form = {kind.key: _posted(posted, kind.key) for kind in retention.KINDS}
    checked = []
    for kind, values in form.items():
        try:
            checked.append((retention.check_policy(kind, values["period"], values["unit"]), values["enabled"]))
        except Invalid as invalid:
            error = ctx.t(f"retention.error.{invalid.field}", kind=ctx.t(f"retention.kind.{kind}"))
            return await _page(request, form=form, error=error, status=400)
    async with db(request) as session:
        current = {policy.kind: policy for policy in await retention.policies(session)}
        for (kind, period, unit), enabled in checked:
            policy = current[kind]
            if (policy.period, policy.unit, policy.enabled) != (period, unit, enabled):
                await retention.set_policy(session, kind, period=period, unit=unit, enabled=enabled, actor=ctx.actor())
    return see_other(request.app.router["retention"].url_for().with_query({"notice": "saved"}))


def _posted(posted, kind: str) -> dict:
    return {"period": str(posted.get(f"period.{kind}", ""))[:10].strip(), "unit": str(posted.get(f"unit.{kind}", ""))[:10],
            "enabled": posted.get(f"enabled.{kind}") == "on"}


async def retention_run(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    dry_run = posted.get("dry_run") == "1"
    services = services_of(request)
    await purge.run(services.sessions, now=services.clock(), dry_run=dry_run, trigger=RetentionTrigger.CONSOLE,
                    actor=request[CONTEXT].actor(), budget=CONSOLE_BUDGET)
    return see_other(request.app.router["retention"].url_for().with_query({"notice": "ran_dry" if dry_run else "ran"}))


ROUTES = [
    route("GET", "/retention", retention_page, name="retention", roles=ADMIN_ONLY),
    route("POST", "/retention/policies", retention_save, name="retention_save", roles=ADMIN_ONLY),
    route("POST", "/retention/run", retention_run, name="retention_run", roles=ADMIN_ONLY),
]
