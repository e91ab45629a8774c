"""よくある質問 (FAQ): the entries with a search, one entry's form, the CSV import and export
(the CLI's format), and beside them the questions the bot could not answer, most frequent
first, each one click from a new entry or a new phrasing of an existing one: this is how a
shop's bot learns its customers' words.

The rules are storage/faq.py's, as for the REST API. Marketers and admins change the FAQ;
support may read it (what they answer by hand should match the bot), as with the API.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from kizuna.storage import faq as faq_store
from kizuna.storage.errors import ServiceError
from kizuna.storage.models import FAQ_ID_MAX, FAQ_ID_PATTERN

from .. import forms
from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

UNANSWERED_DAYS = 30
UNANSWERED_SHOWN = 20
NOTICES = ("faq_created", "faq_saved", "faq_enabled", "faq_disabled", "faq_alternate_added", "faq_imported")
SHOWS = ("all", "enabled", "disabled")
# The route's part for an entry id: what FAQ_ID_PATTERN allows, at most FAQ_ID_MAX long.
ID = "{faq_id:%s}" % FAQ_ID_PATTERN.strip("^$").replace("*", "{0,%d}" % (FAQ_ID_MAX - 1))
FIELDS = ("id", "question", "answer", "alternates", "category")
IMPORT_COUNTS = ("created", "updated", "unchanged", "disabled", "warnings")


def _entry_url(request: web.Request, faq_id: str, **query: str) -> str:
    url = request.app.router["faq_entry"].url_for(faq_id=faq_id)
    return str(url.with_query(query) if query else url)


async def _suggestions(request: web.Request, session, questions) -> dict[str, str]:
    """For each unanswered question, the entry the matcher found nearest (below its bar for
    answering): preselected for 「言い換えとして追加」, so teaching it is one click."""
    inquiries = services_of(request).inquiries
    if inquiries is None:
        return {}
    found = {}
    for question in questions:
        result = await inquiries.match(session, question.text)
        if result.candidates:
            found[question.text] = result.candidates[0].faq_id
    return found


async def _list_page(
    request: web.Request, *, problem: tuple[str, forms.Problem] | None = None, import_errors=None, status: int = 200
) -> web.Response:
    ctx = request[CONTEXT]
    query = request.query.get("q", "")[:100]
    show = request.query.get("show") if request.query.get("show") in SHOWS else "all"
    can_edit = ctx.role in MARKETING
    async with db(request) as session:
        entries = await faq_store.search_entries(session, query)
        every = entries if not query else await faq_store.list_entries(session)
        unanswered = await faq_store.unanswered(session, since=ctx.now - timedelta(days=UNANSWERED_DAYS), limit=UNANSWERED_SHOWN)
        suggested = await _suggestions(request, session, unanswered) if can_edit else {}
    shown = [entry for entry in entries if show == "all" or entry.enabled == (show == "enabled")]
    # An import's figures, from its redirect: whole numbers only (never text from the request).
    counts = {name: request.query.get(name, "") for name in IMPORT_COUNTS}
    return render(request, "faq.html", {
        "entries": shown, "total": len(every), "query": query, "show": show, "can_edit": can_edit,
        "choices": [entry for entry in every if entry.enabled], "unanswered": unanswered, "suggested": suggested,
        "days": UNANSWERED_DAYS, "problem": problem, "import_errors": import_errors,
        "notice": forms.notice(request, NOTICES),
        "counts": {name: int(value) if value.isdigit() and len(value) < 7 else 0 for name, value in counts.items()},
    }, status=status)


async def faq_page(request: web.Request) -> web.StreamResponse:
    return await _list_page(request)


async def faq_export(request: web.Request) -> web.StreamResponse:
    """The CSV `kizuna faq import` and `POST /api/v1/faq/import` read."""
    async with db(request) as session:
        entries = await faq_store.list_entries(session)
    return web.Response(text=faq_store.to_csv(entries), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="faq.csv"'})


async def faq_import(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await request.post()
    upload = form.get("file")
    data = upload.file.read() if isinstance(upload, web.FileField) else b""
    try:
        parsed = faq_store.parse_csv(data)
    except faq_store.CsvError as error:
        return await _list_page(request, import_errors=error, status=400)
    async with db(request) as session:
        report = await faq_store.import_entries(session, parsed, replace=form.get("replace") == "on", actor=ctx.actor())
    counts = {"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
              "disabled": report.disabled, "warnings": report.warnings}
    location = request.app.router["faq"].url_for().with_query({"notice": "faq_imported", **{k: str(len(v)) for k, v in counts.items()}})
    return see_other(location)


async def faq_add_alternate(request: web.Request) -> web.StreamResponse:
    """「言い換えとして追加」: an unanswered question becomes a phrasing of the chosen entry."""
    ctx = request[CONTEXT]
    form = await forms.posted(request, "text", "faq_id")
    try:
        async with db(request) as session:
            await faq_store.add_alternate(session, form["faq_id"], form["text"], actor=ctx.actor())
    except ServiceError as error:
        [problem] = forms.problems(error, "faq").values()
        return await _list_page(request, problem=(form["text"], problem), status=400)
    return see_other(request.app.router["faq"].url_for().with_query({"notice": "faq_alternate_added"}))


def _entry_form(entry=None, **given: str) -> dict[str, str]:
    if entry is None:
        return {name: given.get(name, "") for name in FIELDS}
    return {"id": entry.id, "question": entry.question, "answer": entry.answer,
            "alternates": "\n".join(entry.alternates or ()), "category": entry.category or ""}


async def _entry_page(request: web.Request, *, entry=None, form: dict, errors=None, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    async with db(request) as session:
        categories = await faq_store.categories(session)
    return render(request, "faq_entry.html", {
        "entry": entry, "form": form, "errors": errors or {}, "categories": categories,
        "can_edit": ctx.role in MARKETING, "notice": forms.notice(request, NOTICES),
    }, status=status)


async def faq_new(request: web.Request) -> web.StreamResponse:
    """The form for a new entry; 「新しい質問として追加」 comes here with the question filled in."""
    async with db(request) as session:
        free = await faq_store.unused_id(session)
    return await _entry_page(request, form=_entry_form(id=free, question=request.query.get("question", "")[:1000]))


def _fields(form: dict[str, str], **extra) -> faq_store.FaqFields:
    return faq_store.FaqFields(id=form["id"], question=form["question"], answer=form["answer"],
                               alternates=tuple(forms.lines(form["alternates"])), category=form["category"] or None, **extra)


async def faq_create(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await forms.posted(request, *FIELDS)
    try:
        async with db(request) as session:
            entry = await faq_store.create_entry(session, _fields(form), actor=ctx.actor())
    except ServiceError as error:
        return await _entry_page(request, form=form, errors=forms.problems(error, "faq"), status=400)
    return see_other(_entry_url(request, entry.id, notice="faq_created"))


async def _entry(session, request: web.Request):
    entry = await faq_store.get_entry(session, request.match_info["faq_id"])
    if entry is None:
        raise Refused(404, "error.404")
    return entry


async def faq_entry(request: web.Request) -> web.StreamResponse:
    async with db(request) as session:
        entry = await _entry(session, request)
    return await _entry_page(request, entry=entry, form=_entry_form(entry))


async def faq_update(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await forms.posted(request, *FIELDS)
    form["id"] = request.match_info["faq_id"]
    changes = {"question": form["question"], "answer": form["answer"], "alternates": forms.lines(form["alternates"]),
               "category": form["category"] or None}
    async with db(request) as session:
        entry = await _entry(session, request)
    try:
        async with db(request) as session:
            await faq_store.update_entry(session, entry.id, changes, actor=ctx.actor())
    except ServiceError as error:
        return await _entry_page(request, entry=entry, form=form, errors=forms.problems(error, "faq"), status=400)
    return see_other(_entry_url(request, entry.id, notice="faq_saved"))


async def faq_enable(request: web.Request) -> web.StreamResponse:
    """無効にする / 有効にする: a disabled entry is kept (and its history) but never answered."""
    ctx = request[CONTEXT]
    enabled = (await forms.posted(request, "enabled"))["enabled"] == "true"
    async with db(request) as session:
        entry = await _entry(session, request)
        await faq_store.update_entry(session, entry.id, {"enabled": enabled}, actor=ctx.actor())
    return see_other(_entry_url(request, entry.id, notice="faq_enabled" if enabled else "faq_disabled"))


ROUTES = [
    route("GET", "/faq", faq_page, name="faq"),
    route("GET", "/faq/export.csv", faq_export, name="faq_export"),
    route("POST", "/faq/import", faq_import, name="faq_import", roles=MARKETING),
    route("POST", "/faq/alternates", faq_add_alternate, name="faq_add_alternate", roles=MARKETING),
    route("GET", "/faq/new", faq_new, name="faq_new", roles=MARKETING),
    route("POST", "/faq", faq_create, name="faq_create", roles=MARKETING),
    route("GET", f"/faq/entries/{ID}", faq_entry, name="faq_entry"),
    route("POST", f"/faq/entries/{ID}", faq_update, name="faq_update", roles=MARKETING),
    route("POST", f"/faq/entries/{ID}/enabled", faq_enable, name="faq_enable", roles=MARKETING),
]
