"""Answering inquiries (issue 4): keyword rules, then the FAQ -- and knowing when not to.

The message handler calls ``services.inquiries.answer(ctx, text)`` for a text no flow
took; the postback handler calls ``postback(ctx, event)`` for taps no flow took; the
flow engine calls ``side_answer(ctx, text)`` for a question asked in the middle of a
flow. In that order, a message goes to:

1. the built-in handoff words (「担当者」, ...): a person is asked for;
2. the operator's keyword rules (priority order): a fixed reply, or a flow started by
   its postback action (``register`` ...);
3. the FAQ matcher (:mod:`.matching`):

   * ``answer``  -> the entry's answer text exactly as stored, then 「解決しましたか?」
     with はい / いいえ (postback ``action=faq_feedback&faq=<id>&value=yes|no``);
     いいえ offers a person (「担当者と話す」 -> ``action=handoff``);
   * ``disambiguate`` -> the 2-3 questions in the text and as quick replies
     (``action=faq&faq=<id>``; a tap answers that entry);
   * ``none`` -> never an FAQ answer: a short apology offering a person. A message
     with no content word at all (「ありがとう」「こんにちは」「はい」, emoji) gets a
     friendly acknowledgement instead.

   Outside business hours every offer of a person says when one will reply.

When the shop has no enabled FAQ entry (and no rule matched) ``answer`` returns False
and the handler sends its plain receipt: a bot without an FAQ does not apologise for
every message.

Recorded on the timeline (``sys`` rows, the customer's text in ``text``):
``inquiry.answered`` / ``inquiry.disambiguated`` / ``inquiry.unanswered`` /
``inquiry.smalltalk`` with ``{"outcome", "faq_id", "score", "candidates", "revision"}``
(``via``: ``faq`` | ``choice`` | ``keyword_rule`` | ``flow``), ``inquiry.feedback``
with ``{"faq_id", "value"}``; a handoff is flows/support.py's (``conversation.bot_handoff``).

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
from datetime import datetime
from urllib.parse import urlencode

from kizuna.storage import faq as faq_store
from kizuna.storage import texts
from kizuna.storage.types import utcnow

from .. import support
from ..engine import HANDOFF_WORDS, FlowContext, Input
from .analysis import get_analyzer
from .matching import FaqDoc, FaqMatcher, MatchResult, MatchThresholds
from .rules import CompiledRule, compile_rule, first_match

log = logging.getLogger("kizuna.inquiry")

LABEL_MAX = 20  # LINE's limit for a quick reply label (UTF-16 code units)
MAX_CHOICES = 3

texts.register({
    "inquiry_feedback_question": {"ja": "解決しましたか?", "en": "Did this answer your question?"},
    "inquiry_feedback_yes": {"ja": "はい", "en": "Yes"},
    "inquiry_feedback_no": {"ja": "いいえ", "en": "No"},
    "inquiry_feedback_thanks": {
        "ja": "ご回答ありがとうございます。ほかにもご質問があれば、お気軽にどうぞ。",
        "en": "Thank you! Feel free to ask if you have any other questions.",
    },
    "inquiry_feedback_sorry": {
        "ja": "お役に立てず申し訳ありません。担当者におつなぎすることもできます。",
        "en": "Sorry we couldn't help. We can connect you with a staff member.",
    },
    "inquiry_choose": {
        "ja": "次のうち、どのご質問でしょうか?",
        "en": "Which of these is your question?",
    },
    "inquiry_unanswered": {
        "ja": "申し訳ありません。そのご質問にはこちらでお答えできませんでした。担当者におつなぎしましょうか?",
        "en": "Sorry, we couldn't answer that here. Would you like to talk to a staff member?",
    },
    "inquiry_smalltalk": {
        "ja": "メッセージありがとうございます!ご質問があれば、このトークでお気軽にお送りください。",
        "en": "Thanks for your message! Send us your question here any time.",
    },
    "inquiry_prompt": {
        "ja": "ご質問をこのトークにお送りください。よくあるご質問にはすぐにお答えします。",
        "en": "Send us your question in this chat. We answer common questions right away.",
    },
    "inquiry_faq_gone": {
        "ja": "申し訳ありません。そのご質問のご案内は終了しました。",
        "en": "Sorry, that answer is no longer available.",
    },
    "inquiry_handoff_label": {"ja": "担当者と話す", "en": "Talk to staff"},
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
        elif not result.candidates and not get_analyzer().analyze(text[:1000]).units:
            await ctx.record("inquiry.smalltalk", payload, text=text)
            await ctx.reply_text("inquiry_smalltalk")
        else:
            await ctx.record("inquiry.unanswered", payload, text=text)
            await self._offer_handoff(ctx, "inquiry_unanswered")
        return True

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
            if entry is None or not entry.enabled:
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
        """The answer, then 解決しましたか? — with the close runner-up questions (a near
        tie the matcher answered) one tap away, so a wrong guess is cheap to fix."""
        ctx.reply({"type": "text", "text": entry.answer})  # exactly as stored
        yes, no = await ctx.text("inquiry_feedback_yes"), await ctx.text("inquiry_feedback_no")
        await ctx.reply_text("inquiry_feedback_question", quick_reply=[
            _postback(yes, {"action": "faq_feedback", "faq": entry.id, "value": "yes"}, yes),
            _postback(no, {"action": "faq_feedback", "faq": entry.id, "value": "no"}, no),
            *(_postback(other.question, {"action": "faq", "faq": other.id}, other.question) for other in runner_ups[: MAX_CHOICES - 1]),
        ])

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
