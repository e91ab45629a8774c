"""プライバシー (admins only): the privacy notice versions and the purposes of use, publishing a
new version, what a withdrawal (退会) does to the registration data, and per version how many
members accepted it. The rules are storage/consents.py's, as for the REST API
(POST /api/v1/privacy-notices).
"""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import consents
from kizuna.storage.errors import ServiceError
from kizuna.storage.models import ConsentPurpose, WithdrawalData

from .. import forms
from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import ADMIN_ONLY, route, see_other

NOTICES = ("privacy_published", "privacy_settings_saved")
PURPOSES = tuple(purpose.value for purpose in ConsentPurpose)


async def _page(request: web.Request, *, form=None, errors=None, status: int = 200) -> web.Response:
    async with db(request) as session:
        counts = await consents.counts_per_notice(session)
        on_older = await consents.members_on_older_notice(session)
        withdrawal_data = await consents.withdrawal_data(session)
    current = counts[0].notice if counts else None
    if form is None:  # the new version starts from the current one's words
        form = {"version": "", "url": current.url if current else "", "text": current.text if current else "",
                **{f"purpose_{p}": (current.purposes.get(p, "") if current else "") for p in PURPOSES}}
    return render(request, "privacy.html", {
        "counts": counts, "current": current, "on_older": on_older, "withdrawal_data": withdrawal_data.value,
        "choices": [choice.value for choice in WithdrawalData], "purposes": PURPOSES, "form": form, "errors": errors or {},
        "notice": forms.notice(request, NOTICES),
    }, status=status)


async def privacy_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def privacy_publish(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    form = {name: str(posted.get(name, ""))[:25_000] for name in ("version", "url", "text", *(f"purpose_{p}" for p in PURPOSES))}
    try:
        async with db(request) as session:
            await consents.publish_notice(
                session, version=form["version"], url=form["url"], text=form["text"],
                purposes={p: form[f"purpose_{p}"] for p in PURPOSES}, now=services_of(request).clock(), actor=request[CONTEXT].actor(),
            )
    except ServiceError as error:
        problems = forms.problems(error, "privacy")
        if "purposes" in problems:  # the field of the purpose at fault
            field = getattr(error, "field", "")
            problems[f"purpose_{field.split('.', 1)[1]}" if "." in field else forms.FORM] = problems.pop("purposes")
        return await _page(request, form=form, errors=problems, status=400)
    return see_other(request.app.router["privacy"].url_for().with_query({"notice": "privacy_published"}))


async def privacy_settings(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    try:
        async with db(request) as session:
            await consents.set_withdrawal_data(session, str(posted.get("withdrawal_data", "")), actor=request[CONTEXT].actor())
    except ServiceError as error:
        return await _page(request, errors=forms.problems(error, "privacy"), status=400)
    return see_other(request.app.router["privacy"].url_for().with_query({"notice": "privacy_settings_saved"}))


ROUTES = [
    route("GET", "/privacy", privacy_page, name="privacy", roles=ADMIN_ONLY),
    route("POST", "/privacy/notices", privacy_publish, name="privacy_publish", roles=ADMIN_ONLY),
    route("POST", "/privacy/settings", privacy_settings, name="privacy_settings", roles=ADMIN_ONLY),
]
