"""キーワード応答: rules checked before the FAQ (a fixed reply, or a flow such as 会員登録
started, and optionally a tag for the customer who sent the message), their list and form. The rules are flows/faq/settings.py's (the regex cost check,
a known flow, at most 200 rules), as for the REST API; marketers and admins use this page.
"""

from __future__ import annotations

from aiohttp import web

from kizuna.flows.faq import settings as inquiry_settings
from kizuna.storage import faq as faq_store
from kizuna.storage.errors import NotFound, ServiceError
from kizuna.storage.models import MatchType

from .. import forms
from ..context import CONTEXT, db
from ..i18n import MESSAGES
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

NOTICES = ("rule_created", "rule_saved", "rule_deleted")
ID = "{rule_id:[0-9]{1,9}}"
FIELDS = ("name", "match_type", "pattern", "reply", "reply_text", "flow_action", "priority", "enabled", "add_tag")
BLANK = {"name": "", "match_type": MatchType.CONTAINS, "pattern": "", "reply": "text", "reply_text": "", "flow_action": "",
         "priority": "0", "enabled": "on", "add_tag": ""}


def _values(form: dict[str, str]) -> dict:
    """The rule as the service takes it. The form offers a fixed reply or a flow to start
    (`reply`); the other one is sent empty, and the service says if what is left is not one."""
    text = form["reply"] == "text"
    return {
        "name": form["name"].strip() or None, "match_type": form["match_type"], "pattern": form["pattern"],
        "reply_text": (form["reply_text"] or None) if text else None, "flow_action": None if text else form["flow_action"] or None,
        "priority": forms.whole_number(form["priority"]) or 0, "enabled": forms.checked(form, "enabled"),
        "add_tag": form["add_tag"] if form["add_tag"].strip() else None,  # left empty: the rule tags nobody
    }


def _form_of(rule) -> dict[str, str]:
    return {"name": rule.name or "", "match_type": rule.match_type, "pattern": rule.pattern,
            "reply": "flow" if rule.flow_action else "text", "reply_text": rule.reply_text or "",
            "flow_action": rule.flow_action or "", "priority": str(rule.priority), "enabled": "on" if rule.enabled else "",
            "add_tag": rule.add_tag or ""}


def _actions(ctx) -> list[tuple[str, str]]:
    """The flows a rule may start, by the name staff know them by (the action where none is known)."""
    return [(action, ctx.t(f"rule.action.{action}") if f"rule.action.{action}" in MESSAGES else action)
            for action in sorted(inquiry_settings.known_actions())]


async def _page(request: web.Request, template: str, *, rule=None, form: dict, errors=None, status: int = 200) -> web.Response:
    async with db(request) as session:
        rules = await faq_store.list_rules(session) if rule is None else []
    return render(request, template, {
        "rules": rules, "rule": rule, "form": form, "errors": errors or {}, "match_types": [str(kind) for kind in MatchType],
        "actions": _actions(request[CONTEXT]), "notice": forms.notice(request, NOTICES),
        "limit": inquiry_settings.MAX_RULES,
    }, status=status)


async def keyword_rules(request: web.Request) -> web.StreamResponse:
    return await _page(request, "keyword_rules.html", form=dict(BLANK))


async def keyword_rule_create(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await forms.posted(request, *FIELDS)
    try:
        async with db(request) as session:
            await inquiry_settings.create_keyword_rule(session, _values(form), actor=ctx.actor())
    except ServiceError as error:
        return await _page(request, "keyword_rules.html", form=form, errors=forms.problems(error, "rule"), status=400)
    return see_other(request.app.router["keyword_rules"].url_for().with_query({"notice": "rule_created"}))


async def _rule(request: web.Request):
    async with db(request) as session:
        rule = await faq_store.get_rule(session, int(request.match_info["rule_id"]))
    if rule is None:
        raise Refused(404, "error.404")
    return rule


async def keyword_rule(request: web.Request) -> web.StreamResponse:
    rule = await _rule(request)
    return await _page(request, "keyword_rule.html", rule=rule, form=_form_of(rule))


async def keyword_rule_update(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    rule = await _rule(request)
    form = await forms.posted(request, *FIELDS)
    try:
        async with db(request) as session:
            await inquiry_settings.update_keyword_rule(session, rule.id, _values(form), actor=ctx.actor())
    except ServiceError as error:
        return await _page(request, "keyword_rule.html", rule=rule, form=form, errors=forms.problems(error, "rule"), status=400)
    url = request.app.router["keyword_rule"].url_for(rule_id=str(rule.id))
    return see_other(url.with_query({"notice": "rule_saved"}))


async def keyword_rule_delete(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    rule = await _rule(request)
    try:
        async with db(request) as session:
            await inquiry_settings.delete_keyword_rule(session, rule.id, actor=ctx.actor())
    except NotFound:
        pass  # deleted by someone else meanwhile: gone either way
    return see_other(request.app.router["keyword_rules"].url_for().with_query({"notice": "rule_deleted"}))


ROUTES = [
    route("GET", "/keyword-rules", keyword_rules, name="keyword_rules", roles=MARKETING),
    route("POST", "/keyword-rules", keyword_rule_create, name="keyword_rule_create", roles=MARKETING),
    route("GET", f"/keyword-rules/{ID}", keyword_rule, name="keyword_rule", roles=MARKETING),
    route("POST", f"/keyword-rules/{ID}", keyword_rule_update, name="keyword_rule_update", roles=MARKETING),
    route("POST", f"/keyword-rules/{ID}/delete", keyword_rule_delete, name="keyword_rule_delete", roles=MARKETING),
]
