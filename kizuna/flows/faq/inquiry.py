"""Answering inquiries (issue 4): keyword rules, then the FAQ -- and knowing when not to.

The message handler calls ``services.inquiries.answer(ctx, text)`` for a text no flow
took; the postback handler calls ``postback(ctx, event)`` for taps no flow took; the
flow engine calls ``side_answer(ctx, text)`` for a question asked in the middle of a
flow. In that order, a message goes to:

1. the built-in handoff words (「担当者」, ...): a person is asked for;
2. the operator's keyword rules (priority order): a fixed reply, or a flow started by
   its postback action (``register`` ...); a rule with ``add_tag`` also tags the customer
   (``ctx.tag``: a ``customer.tagged`` row after the answer's);
3. a complaint (:func:`.intents.complaint`: 「店員さんの態度がひどかったです」「最悪」
   「届いた商品が壊れていました」): an apology (申し訳ございません), the FAQ's answer when
   the shop wrote one for that very problem (a damaged parcel: send a photo), then
   ``support.handoff(reason="complaint")``; when the FAQ is not sure, its close questions
   are quick replies on the handoff's message (taps work while a person owns the chat);
4. the FAQ matcher (:mod:`.matching`):

   * ``answer``  -> the entry's answer text exactly as stored, in one bubble whose quick
     replies ask whether it solved the question: 「解決しました」 / 「解決しませんでした」
     (postback ``action=faq_feedback&faq=<id>&value=yes|no``), then the close runner-up
     questions (``action=faq&faq=<id>``); 「解決しませんでした」 offers a person
     (「担当者と話す」 -> ``action=handoff``);
   * ``disambiguate`` -> the 2-3 questions in the text and as quick replies
     (``action=faq&faq=<id>``; a tap answers that entry);
   * ``none`` -> never an FAQ answer. Small talk (:func:`.intents.is_small_talk`: no
     content word at all, or weather, thanks and praise, 「了解です」) gets a friendly line
     that invites a question; a real question gets a short apology offering a person,
     and the N-th question in a row left unanswered (the shop's setting
     ``unanswered_handoff_after``, default 2, within ``UNANSWERED_RUN_WITHIN``) hands the
     customer to a person (``support.handoff(reason="unanswered")``) instead.

   Offers of a person promise nothing about when: the handoff itself says when a person
   will answer (business hours).

When the shop has no enabled FAQ entry (and no rule matched, and it is no complaint)
``answer`` returns False and the handler sends its plain receipt: a bot without an FAQ
does not apologise for every message.

A tap on 「こちらの質問」 whose entry has since been disabled or deleted is an old button:
it says so and asks for the question as a message (``inquiry_faq_gone``).

Recorded on the timeline (``sys`` rows, the customer's text in ``text``):
``inquiry.answered`` / ``inquiry.disambiguated`` / ``inquiry.unanswered`` /
``inquiry.smalltalk`` with ``{"outcome", "faq_id", "score", "candidates", "revision"}``
(``via``: ``faq`` | ``choice`` | ``keyword_rule`` | ``flow``; an unanswered question that
was handed to a person: ``"handoff": true``), ``inquiry.complaint`` with the same and
``{"kinds", "matched"}`` (``faq_id``: the answer sent with the apology, if any),
``inquiry.feedback`` with ``{"faq_id", "value"}``; a handoff is flows/support.py's
(``conversation.bot_handoff`` with its reason).

Process-wide state (one ``InquiryService`` per worker process, in ``Services``): the
matcher over the enabled entries, the compiled keyword rules, and the revisions they
were built from. Every inquiry reads ``inquiry_settings`` once (primary key, inside
the event's transaction) and rebuilds what changed, off the event loop
(``asyncio.to_thread``), under a lock that matching also takes so no match ever sees
a half-swapped knowledge base.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from kizuna.storage import faq as faq_store
from kizuna.storage import texts
from kizuna.storage.types import utcnow

from .. import support
from ..engine import HANDOFF_WORDS, FlowContext, Input
from .analysis import get_analyzer
from .intents import Complaint, complaint, is_small_talk
from .matching import FaqDoc, FaqMatcher, MatchResult, MatchThresholds
from .rules import CompiledRule, compile_rule, first_match

log = logging.getLogger("kizuna.inquiry")

LABEL_MAX = 20  # LINE's limit for a quick reply label (UTF-16 code units)
MAX_CHOICES = 3

QUICK_REPLY_MAX = 13  # LINE's limit of quick-reply items on one message
# Unanswered questions count as "in a row" only within this time: yesterday's miss and
# today's are not one conversation.
UNANSWERED_RUN_WITHIN = timedelta(hours=1)

texts.register({
    "inquiry_feedback_yes": {"ja": "解決しました", "en": "Solved, thanks"},
    "inquiry_feedback_no": {"ja": "解決しませんでした", "en": "Not solved"},
    "inquiry_feedback_thanks": {
        "ja": "お役に立ててよかったです。ほかにもご質問があれば、お気軽にお送りください。",
        "en": "Glad we could help! Feel free to ask if you have any other questions.",
    },
    "inquiry_feedback_sorry": {
        "ja": "お役に立てず申し訳ございません。担当者とお話しになる場合は、「担当者と話す」をタップしてください。",
        "en": "Sorry we couldn't help. Tap “Talk to a person” to reach one of us.",
    },
    "inquiry_choose": {
        "ja": "お問い合わせの内容に近いものをお選びください。",
        "en": "Which of these is closest to your question?",
    },
    "inquiry_unanswered": {
        "ja": "申し訳ございません。そのご質問には、自動応答ではお答えできませんでした。担当者とお話しになる場合は、「担当者と話す」をタップしてください。",
        "en": "Sorry, we couldn't answer that automatically. Tap “Talk to a person” to reach one of us.",
    },
    "inquiry_smalltalk": {
        "ja": "メッセージありがとうございます！ご質問があれば、いつでもお気軽にお送りください。",
        "en": "Thanks for your message! Send us your question here any time.",
    },
    "inquiry_complaint": {
        "ja": "ご不便・ご不快な思いをおかけし、大変申し訳ございません。",
        "en": "We're very sorry for the trouble this has caused you.",
    },
    "inquiry_prompt": {
        "ja": "ご質問をこのトークにお送りください。よくあるご質問にはすぐにお答えします。",
        "en": "Send us your question in this chat. We answer common questions right away.",
    },
    "inquiry_faq_gone": {
        "ja": "こちらのボタンは受付を終了しました。お手数ですが、ご質問をもう一度メッセージでお送りください。",
        "en": "This button is no longer in use. Please send us your question again as a message.",
    },
    "inquiry_handoff_label": {"ja": "担当者と話す", "en": "Talk to a person"},
})


@dataclass(frozen=True)
class _Entry:
    id: str
    question: str
    answer: str


def thresholds_from(overrides: dict) -> MatchThresholds:
    """MatchThresholds with the stored overrides (unknown keys ignored)."""
    known = {f.name for f in dataclasses.fields(MatchThresholds)}
    return dataclasses.replace(MatchThresholds(), **{k: v for k, v in (overrides or {}).items() if k in known})


def truncate_label(text: str, limit: int = LABEL_MAX) -> str:
    """At most `limit` UTF-16 code units; a cut label ends in 「…」."""
    text = " ".join(text.split()).rstrip("??")
    if _utf16(text) <= limit:
        return text
    out = ""
    for char in text:
        if _utf16(out + char) > limit - 1:
            break
        out += char
    # Prefer to cut after a particle or a comma near the end (「…他の…」, not 「…クーポ…」).
    for index in range(len(out) - 1, max(len(out) - 7, 7), -1):
        if out[index] in _CUT_AFTER:
            out = out[: index + 1]
            break
    return out.rstrip("、。,. ") + "…"


_CUT_AFTER = set("のはをにがでとやも、。,")


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _postback(label: str, data: dict, display_text: str | None = None) -> dict:
    action = {"type": "postback", "label": truncate_label(label), "data": urlencode(data)}
    if display_text:
        action["displayText"] = display_text[:300]
    return {"type": "action", "action": action}


class InquiryService:
    """One per process; see the module docstring."""

    def __init__(self, *, in_thread: bool = True, matcher_factory: Callable[..., FaqMatcher] = FaqMatcher) -> None:
        """`matcher_factory(docs, thresholds)` builds the matcher (benchmarks plug a baseline in
        here); it must offer ``match``, ``replace_all`` and a ``thresholds`` attribute."""
        self.in_thread = in_thread
        self.matcher_factory = matcher_factory
        self._lock = asyncio.Lock()
        self._matcher: FaqMatcher | None = None
        self._entries: dict[str, _Entry] = {}
        self._faq_revision: int | None = None
        self._config_revision: int | None = None
        self._rules: list[CompiledRule] = []
        # what the last rebuild cost (logged; read by benchmarks)
        self.rebuilds = 0
        self.last_rebuild_seconds = 0.0

    # -- keeping up with the database ---------------------------------------------------------

    async def _refresh(self, session) -> faq_store.Settings:
        settings = await faq_store.read_settings(session)
        if settings.faq_revision == self._faq_revision and settings.config_revision == self._config_revision:
            return settings
        async with self._lock:
            # Read again under the lock: another task may have caught up meanwhile, and on
            # PostgreSQL this statement sees what committed since the first read.
            settings = await faq_store.read_settings(session)
            if settings.config_revision != self._config_revision:
                rules = await faq_store.list_rules(session, enabled_only=True)
                self._rules = [rule for rule in map(compile_rule, rules) if rule is not None]
                self._config_revision = settings.config_revision
            thresholds = thresholds_from(settings.thresholds)
            if settings.faq_revision != self._faq_revision:
                entries = await faq_store.list_entries(session, enabled=True)
                docs = [FaqDoc(e.id, e.question, tuple(e.alternates or ()), e.category, e.answer) for e in entries]
                if docs:  # (no FAQ: nothing to build, not even the dictionary to load)
                    started = time.perf_counter()
                    if self._matcher is None:
                        self._matcher = await self._run(self.matcher_factory, docs, thresholds)
                    else:
                        await self._run(self._matcher.replace_all, docs)
                    self.last_rebuild_seconds = time.perf_counter() - started
                    self.rebuilds += 1
                    log.info("FAQ index built: %d entries, revision %d, %.0f ms",
                             len(docs), settings.faq_revision, self.last_rebuild_seconds * 1000)
                self._entries = {e.id: _Entry(e.id, e.question, e.answer) for e in entries}
                self._faq_revision = settings.faq_revision
            if self._matcher is not None and self._matcher.thresholds != thresholds:
                self._matcher.thresholds = thresholds
        return settings

    async def _run(self, function: Callable, *args):
        if self.in_thread:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    async def _match(self, text: str) -> tuple[MatchResult, dict[str, _Entry], int | None]:
        async with self._lock:  # never while a rebuild swaps the index
            if self._matcher is None or not self._entries:
                return MatchResult("none", (), 0.0), {}, self._faq_revision
            return self._matcher.match(text), self._entries, self._faq_revision

    async def match(self, session, text: str) -> MatchResult:
        """The matcher's verdict on `text` against the current FAQ (for tools and tests)."""
        await self._refresh(session)
        return (await self._match(text))[0]

    # -- a message no flow took -------------------------------------------------------------

    async def answer(self, ctx: FlowContext, text: str) -> bool:
        if HANDOFF_WORDS.matches(Input("text", text=text)):
            await self.handoff(ctx, via="keyword")
            return True
        settings = await self._refresh(ctx.session)
        rule = first_match(self._rules, text)
        if rule is not None and await self._apply_rule(ctx, rule, text):
            return True
        found = complaint(text)
        if found is not None:
            await self._complaint(ctx, text, found)
            return True
        if not self._entries:
            return False  # no FAQ set up: the handler's plain receipt
        result, entries, revision = await self._match(text)
        payload = _payload(result, revision)
        best = entries.get(result.best.faq_id) if result.best is not None else None
        chosen = [entries[c.faq_id] for c in result.candidates if c.faq_id in entries]
        if result.outcome == "answer" and best is not None:
            await ctx.record("inquiry.answered", {**payload, "via": "faq"}, text=text)
            await self._reply_answer(ctx, best, runner_ups=chosen[1:])
        elif result.outcome == "disambiguate" and chosen:
            await ctx.record("inquiry.disambiguated", {**payload, "via": "faq"}, text=text)
            await self._reply_choices(ctx, chosen[:MAX_CHOICES])
        elif is_small_talk(text, get_analyzer().analyze(text[:1000])):
            await ctx.record("inquiry.smalltalk", {**payload, "outcome": "none"}, text=text)
            await ctx.reply_text("inquiry_smalltalk")
        else:
            await self._unanswered(ctx, text, {**payload, "outcome": "none"}, settings)
        return True

    async def _unanswered(self, ctx: FlowContext, text: str, payload: dict, settings: faq_store.Settings) -> None:
        """A question the FAQ cannot answer: an apology offering a person, or, when it is the
        shop's N-th in a row, the person (the rule ``unanswered_handoff_after``)."""
        after = settings.unanswered_handoff_after
        earlier = await faq_store.unanswered_in_a_row(
            ctx.session, ctx.customer.id, since=ctx.now - UNANSWERED_RUN_WITHIN, limit=max(0, after - 1),
        ) if after > 0 else 0
        if after > 0 and earlier + 1 >= after:
            await ctx.record("inquiry.unanswered", {**payload, "handoff": True, "in_a_row": earlier + 1}, text=text)
            await support.handoff(ctx, reason="unanswered")
            return
        await ctx.record("inquiry.unanswered", payload, text=text)
        await self._offer_handoff(ctx, "inquiry_unanswered")

    async def _complaint(self, ctx: FlowContext, text: str, found: Complaint) -> None:
        """An apology, the FAQ's answer when it has one for this very problem (a shop writes
        「届いた商品が破損していました」 to say what it needs: a photo, the order number), and a
        person: a complaint is never left to the bot."""
        entry, choices, payload = None, [], {"outcome": "complaint", "faq_id": None}
        if self._entries:
            result, entries, revision = await self._match(text)
            payload = {**_payload(result, revision), "outcome": "complaint", "faq_id": None}
            if result.outcome == "answer" and result.best is not None:
                entry = entries.get(result.best.faq_id)
                payload["faq_id"] = entry.id if entry is not None else None
            elif result.outcome == "disambiguate":
                choices = [entries[c.faq_id] for c in result.candidates if c.faq_id in entries][:MAX_CHOICES]
                payload["offered"] = [choice.id for choice in choices]
        await ctx.record("inquiry.complaint", {**payload, "kinds": list(found.kinds), "matched": list(found.matched)}, text=text)
        if entry is None or "申し訳" not in entry.answer:  # the shop's answer may apologise already
            await ctx.reply_text("inquiry_complaint")
        if entry is not None:
            ctx.reply({"type": "text", "text": entry.answer})  # exactly as stored
        await support.handoff(ctx, reason="complaint")
        last = ctx.replies[-1] if ctx.replies else None
        if choices and last is not None and last.get("type") == "text" and "quickReply" not in last:
            # Entries close to the problem, one tap away while the customer waits (a tap is a
            # postback, which works while a person owns the conversation). On the last
            # message: LINE shows only its quick replies.
            last["quickReply"] = {"items": [_postback(c.question, {"action": "faq", "faq": c.id}, c.question) for c in choices]}

    async def _apply_rule(self, ctx: FlowContext, rule: CompiledRule, text: str) -> bool:
        payload = {"outcome": "keyword_rule", "via": "keyword_rule", "rule_id": rule.id, "flow_action": rule.flow_action}
        if rule.flow_action:
            if not await self.run_action(ctx, rule.flow_action):
                log.warning("keyword rule %s starts unknown action %r; ignored", rule.id, rule.flow_action)
                return False
        elif rule.reply_text:
            ctx.reply({"type": "text", "text": rule.reply_text})
        else:
            return False
        await ctx.record("inquiry.answered", payload, text=text)
        if rule.add_tag:  # after the answer's row: the timeline reads "answered, then tagged"
            await ctx.tag(rule.add_tag, via="keyword_rule", rule_id=rule.id)
        return True

    async def run_action(self, ctx: FlowContext, action: str) -> bool:
        """Do what a tap on a postback `action=<action>` does: start a flow or command, or
        one of this service's own actions. False if nothing knows the action."""
        event = Input("postback", data=urlencode({"action": action}))
        if ctx.services is not None and await ctx.services.flows.handle(ctx, event):
            return True
        return await self.postback(ctx, event)

    # -- a question in the middle of a flow ---------------------------------------------------

    async def side_answer(self, ctx: FlowContext, text: str) -> list[dict] | None:
        """The FAQ answer to a question asked mid-flow, only when the matcher is sure."""
        if not text or not text.strip():
            return None
        await self._refresh(ctx.session)
        if not self._entries:
            return None
        result, entries, revision = await self._match(text)
        best = result.best
        if result.outcome != "answer" or best is None or best.faq_id not in entries:
            return None
        await ctx.record("inquiry.answered", {**_payload(result, revision), "via": "flow"}, text=text)
        return [{"type": "text", "text": entries[best.faq_id].answer}]

    # -- taps no flow took ------------------------------------------------------------------

    async def postback(self, ctx: FlowContext, event: Input) -> bool:
        data = event.action
        action = data.get("action")
        if action == "faq_feedback":
            await self._feedback(ctx, data.get("faq", ""), data.get("value", ""))
        elif action == "faq":
            entry = await faq_store.get_entry(ctx.session, data.get("faq", ""))
            if entry is None or not entry.enabled:  # a button of an old answer or choice
                await ctx.record("inquiry.unanswered", {"outcome": "gone", "faq_id": data.get("faq"), "via": "choice"})
                await self._offer_handoff(ctx, "inquiry_faq_gone")
            else:
                await ctx.record("inquiry.answered", {"outcome": "answer", "faq_id": entry.id, "via": "choice"}, text=entry.question)
                await self._reply_answer(ctx, _Entry(entry.id, entry.question, entry.answer))
        elif action == "handoff":
            await self.handoff(ctx, via="button")
        elif action == "inquiry":
            await ctx.reply_text("inquiry_prompt", quick_reply=[await self._handoff_item(ctx)])
        else:
            return False
        return True

    async def _feedback(self, ctx: FlowContext, faq_id: str, value: str) -> None:
        if value not in ("yes", "no"):
            return
        await ctx.record("inquiry.feedback", {"faq_id": faq_id, "value": value})
        if value == "yes":
            await ctx.reply_text("inquiry_feedback_thanks")
        else:
            await self._offer_handoff(ctx, "inquiry_feedback_sorry")

    async def handoff(self, ctx: FlowContext, *, via: str) -> None:
        """The customer asked for a person (outside a flow; the engine handles it inside)."""
        await support.handoff(ctx, reason=via)

    # -- replies ------------------------------------------------------------------------------

    async def _reply_answer(self, ctx: FlowContext, entry: _Entry, runner_ups: list[_Entry] = ()) -> None:
        """The answer in one bubble; its quick replies ask whether it solved the question
        and keep the close runner-up questions (a near tie the matcher answered) one tap
        away, so a wrong guess is cheap to fix."""
        yes, no = await ctx.text("inquiry_feedback_yes"), await ctx.text("inquiry_feedback_no")
        items = [
            _postback(yes, {"action": "faq_feedback", "faq": entry.id, "value": "yes"}, yes),
            _postback(no, {"action": "faq_feedback", "faq": entry.id, "value": "no"}, no),
            *(_postback(other.question, {"action": "faq", "faq": other.id}, other.question) for other in runner_ups[: MAX_CHOICES - 1]),
        ]
        # The text exactly as stored.
        ctx.reply({"type": "text", "text": entry.answer, "quickReply": {"items": items[:QUICK_REPLY_MAX]}})

    async def _reply_choices(self, ctx: FlowContext, entries: list[_Entry]) -> None:
        lines = [await ctx.text("inquiry_choose"), *(f"・{entry.question}" for entry in entries)]
        items = [_postback(entry.question, {"action": "faq", "faq": entry.id}, entry.question) for entry in entries]
        items.append(await self._handoff_item(ctx))
        ctx.reply({"type": "text", "text": "\n".join(lines), "quickReply": {"items": items}})

    async def _handoff_item(self, ctx: FlowContext) -> dict:
        label = await ctx.text("inquiry_handoff_label")
        return _postback(label, {"action": "handoff"}, label)

    async def _offer_handoff(self, ctx: FlowContext, key: str) -> None:
        """An apology with 「担当者と話す」 (when the shop is closed, the handoff itself says
        when a person will answer: nothing is promised before the customer asks)."""
        text = await ctx.text(key)
        ctx.reply({"type": "text", "text": text, "quickReply": {"items": [await self._handoff_item(ctx)]}})


def _now(ctx: FlowContext) -> datetime:
    clock = getattr(ctx.services, "clock", None)
    return clock() if clock is not None else (ctx.now or utcnow())


def _payload(result: MatchResult, revision: int | None) -> dict:
    best = result.best
    return {
        "outcome": result.outcome,
        "faq_id": best.faq_id if best is not None and result.outcome != "none" else None,
        "score": round(result.score, 4),
        "candidates": [{"faq_id": c.faq_id, "score": c.score, "matched_text": c.matched_text} for c in result.candidates],
        "revision": revision,
    }
