"""応答メッセージ (admins only, as the REST API's texts): every text the bot sends, its default
and the shop's edit, per language; editing and going back to the default. The privacy
policy's URL, which registration sends before asking for consent, is one of these texts
(`privacy_policy_url`) and has its own card at the top: it starts as a placeholder.

The rules are storage/texts.py's: 1 to 5,000 characters, only the placeholders the bot fills
in, and for a `_url` text one http(s) URL (the English text follows the Japanese one
unless it is edited itself).
"""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import texts
from kizuna.storage.errors import NotFound, ServiceError

from .. import forms
from ..context import CONTEXT, db
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

PRIVACY = "privacy_policy_url"
PLACEHOLDER_URL = "https://example.com/privacy"  # registration's default: no shop's policy
NOTICES = ("text_saved", "text_reset")
KEY = "{key:[a-z0-9_]{1,100}}"
LOCALE = "{locale:ja|en}"
# The list's groups, by the key's first word (the flows name their texts so).
GROUPS = (
    ("general", ("greeting", "received", "flow", "handoff")),
    ("registration", ("registration", "privacy", "member", "profile", "marketing")),
    ("coupons", ("coupon", "coupons")),
    ("inquiry", ("inquiry",)),
    ("support", ("support",)),
)


def group_of(key: str) -> str:
    first = key.split("_")[0]
    return next((name for name, prefixes in GROUPS if first in prefixes), "other")


def _by_key(items: list[dict]) -> dict[str, dict[str, dict]]:
    """{key: {locale: item}} in the order the texts were registered."""
    keyed: dict[str, dict[str, dict]] = {}
    for item in items:
        keyed.setdefault(item["key"], {})[item["locale"]] = item
    return keyed


async def texts_page(request: web.Request) -> web.StreamResponse:
    """The texts of one group at a time (there are about a hundred), or those a search finds."""
    query = request.query.get("q", "")[:100].strip()
    async with db(request) as session:
        keyed = _by_key(await texts.all_texts(session))
    privacy = keyed[PRIVACY]
    groups: dict[str, list] = {name: [] for name, _ in (*GROUPS, ("other", ()))}
    for key, items in keyed.items():
        groups[group_of(key)].append((key, items))
    tabs = [(name, len(rows)) for name, rows in groups.items() if rows]
    group = request.query.get("group") if request.query.get("group") in groups else GROUPS[0][0]
    if query:
        folded = query.casefold()
        shown = [(name, [(key, items) for key, items in rows if folded in key
                         or any(folded in item["text"].casefold() for item in items.values())]) for name, rows in groups.items()]
    else:
        shown = [(group, groups[group])]
    return render(request, "texts.html", {
        "groups": [(name, rows) for name, rows in shown if rows], "tabs": tabs, "group": None if query else group,
        "query": query, "privacy": privacy, "placeholder": privacy["ja"]["text"] == PLACEHOLDER_URL,
        "notice": forms.notice(request, NOTICES),
    })


async def _edit_page(request: web.Request, key: str, *, typed: dict[str, str] | None = None, errors=None,
                     status: int = 200) -> web.Response:
    try:
        async with db(request) as session:
            items = await texts.texts_of(session, key)
    except NotFound:
        raise Refused(404, "error.404") from None
    return render(request, "text_edit.html", {
        "key": key, "items": items, "typed": typed or {}, "errors": errors or {}, "is_url": texts.is_url(key),
        "placeholders": texts.placeholders(key), "group": group_of(key), "notice": forms.notice(request, NOTICES),
    }, status=status)


async def text_edit(request: web.Request) -> web.StreamResponse:
    return await _edit_page(request, request.match_info["key"])


def _back(request: web.Request, key: str, notice: str) -> web.Response:
    """Back where the form was: the list (the privacy card) or the text's page."""
    if request.query.get("from") == "list":
        return see_other(request.app.router["texts"].url_for().with_query({"notice": notice}))
    return see_other(request.app.router["text_edit"].url_for(key=key).with_query({"notice": notice}))


async def text_save(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    key, locale = request.match_info["key"], request.match_info["locale"]
    text = (await forms.posted(request, "text", limit=texts.MAX_TEXT + 1))["text"]
    try:
        async with db(request) as session:
            await texts.set_text(session, key, locale, text, actor=ctx.actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    except ServiceError as error:
        problem = forms.problems(error, "url" if texts.is_url(key) else "text")
        return await _edit_page(request, key, typed={locale: text},
                                errors={locale: problem.get("text") or problem[forms.FORM]}, status=400)
    return _back(request, key, "text_saved")


async def text_reset(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    key, locale = request.match_info["key"], request.match_info["locale"]
    try:
        async with db(request) as session:
            await texts.reset_text(session, key, locale, actor=ctx.actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    return _back(request, key, "text_reset")


ROUTES = [
    route("GET", "/texts", texts_page, name="texts", roles=ADMIN_ONLY),
    route("GET", f"/texts/{KEY}", text_edit, name="text_edit", roles=ADMIN_ONLY),
    route("POST", f"/texts/{KEY}/{LOCALE}", text_save, name="text_save", roles=ADMIN_ONLY),
    route("POST", f"/texts/{KEY}/{LOCALE}/reset", text_reset, name="text_reset", roles=ADMIN_ONLY),
]
