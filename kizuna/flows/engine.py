"""Conversations as declared state machines.

A `Flow` names its entry points, its states and its timeout; the engine adds the
fallbacks that work in every state (cancel, talk to a person, timeout) so a
customer can never get stuck. State ids are stable strings ("registration.birthday"):
they are stored data, so renaming one is a migration.

The engine reads the customer's state from the database on every event, inside the
event's transaction and under the per-customer ordering of the processor, so any
worker can continue any conversation, including after a restart. (No cache: the
read is one primary-key lookup in a transaction that runs anyway, and a cache could
only make a resumed conversation stale.)

A flow module declares itself at the top:

    registration = Flow(
        name="registration",
        entry_points=(Postback("register"), Keyword("会員登録")),
        states=(State("registration.consent", prompt=..., on_input=...), ...),
        timeout=timedelta(minutes=30),
    )

A state's `prompt` sends its question; its `on_input` returns a transition:
`Goto(state)`, `Retry(message)` (re-prompt with what was wrong), or `Done()`.

Buttons that answer a state's question are postbacks that name the state
(`step_data(state, value)`: `action=step&state=registration.confirm&value=ok`, with a
displayText so the chat shows the customer's answer). A tap is for the state it names:
when the customer has moved on (another question now, or no flow at all: registered,
cancelled, timed out), the button is an old one and gets a short answer saying so -- the
question in hand is asked again, or the flow's `on_stale` says what to do now -- never a
choice of FAQ entries. A state may take the buttons of another (`State.accepts`: the
confirm card takes a field tapped on the list of fields to change). Cards sent by earlier
releases sent their labels as plain text; `Flow.stale_texts` names those labels, which
are read the same way when no flow is in progress.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode

from kizuna.storage import flow_states, tags, texts
from kizuna.storage.models import Customer, Direction, Interaction

# -- what the customer did -----------------------------------------------------------


@dataclass(frozen=True)
class Input:
    kind: Literal["text", "postback", "follow", "other"]
    text: str | None = None  # a message's text, or a postback's displayText
    data: str | None = None  # a postback's data
    params: dict | None = None  # a postback's datetime picker params

    @property
    def action(self) -> dict[str, str]:
        """Postback data as key/value pairs ("action=edit&field=name")."""
        return dict(parse_qsl(self.data or "", keep_blank_values=True))

    @property
    def state(self) -> str | None:
        """The flow state a tapped button belongs to (`step_data`), if it names one."""
        return self.action.get("state") if self.kind == "postback" else None

    @property
    def value(self) -> str | None:
        """The answer a tapped button gives (`step_data(state, value)`)."""
        return self.action.get("value") if self.kind == "postback" else None


STEP = "step"  # the postback action of a button that answers a flow state's question


def step_data(state: str, value: str, **extra: str) -> str:
    """Postback data of a button answering `state`'s question with `value`."""
    return urlencode({"action": STEP, "state": state, "value": value, **extra})


def normalize(text: str | None) -> str:
    """What keyword matching compares: NFKC, lower case, no surrounding space."""
    return unicodedata.normalize("NFKC", text or "").strip().lower()


# -- what the flow can use -------------------------------------------------------------


class SideAnswerer(Protocol):
    """Answers a free-text question asked in the middle of a flow (the FAQ), or None."""

    async def __call__(self, ctx: "FlowContext", text: str) -> list[dict] | None: ...


class Handoff(Protocol):
    """Hands the customer to a person (flows/support.py), whoever asks for it."""

    async def __call__(self, ctx: "FlowContext", *, reason: str) -> Any: ...


@dataclass
class FlowContext:
    session: Any
    customer: Customer
    now: datetime
    replies: list[dict]
    services: Any = None  # process-wide services (coupons, FAQ, public URL) from bot/
    # Work on LINE's side that follows from this event (e.g. switch the rich menu),
    # run by the processor after the event's transaction commits.
    effects: list[dict] = field(default_factory=list)
    # Live updates for watching staff (a handoff, a message in a conversation), published
    # by the processor after the commit.
    updates: list[dict] = field(default_factory=list)

    @property
    def locale(self) -> str:
        return texts.locale_for(self.customer.language)

    async def text(self, key: str, **values: Any) -> str:
        text = await texts.get_text(self.session, key, self.locale)
        return text.format(**values) if values else text

    def reply(self, *messages: dict) -> None:
        self.replies.extend(messages)

    async def reply_text(self, key: str, *, quick_reply: list[dict] | None = None, **values: Any) -> None:
        message: dict = {"type": "text", "text": await self.text(key, **values)}
        if quick_reply:
            message["quickReply"] = {"items": quick_reply}
        self.reply(message)

    def after_commit(self, effect: dict) -> None:
        self.effects.append(effect)

    def publish(self, update: dict) -> None:
        self.updates.append(update)

    async def record(self, kind: str, payload: dict | None = None, text: str | None = None) -> None:
        """A system row on the customer's timeline (flow started, registered, ...)."""
        self.session.add(Interaction(customer_id=self.customer.id, direction=Direction.SYS, kind=kind, text=text, payload=payload, sender_type="system"))

    async def tag(self, tag: str, **why: Any) -> bool:
        """Tag the customer (`await ctx.tag("会員")`), in the event's transaction; False when they
        had it already, or have as many tags as a customer may (the event goes on: a tag is
        never worth failing the customer's message for). The bot names no actor for the audit
        log: what it tagged is a `customer.tagged` row on the timeline, with `why` (e.g.
        via="keyword_rule", rule_id=3), and a live update for a page showing the customer
        (flows/support.py `customer_update`'s shape)."""
        try:
            added = await tags.add(self.session, self.customer.id, tag, actor=None)
        except tags.TooManyTags:
            return False
        if added:
            await self.record("customer.tagged", {"tag": tags.normalize(tag), **why}, text=tags.normalize(tag))
            self.publish({"type": "customer", "customer_id": self.customer.id})
        return added


# -- transitions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Goto:
    state: str


@dataclass(frozen=True)
class Retry:
    """Stay in the state: say what was wrong, then ask again."""

    message: str | None = None


@dataclass(frozen=True)
class Done:
    pass


Transition = Goto | Retry | Done
Prompt = Callable[[FlowContext, dict], Awaitable[None]]
OnInput = Callable[[FlowContext, Input, dict], Awaitable[Transition]]


@dataclass(frozen=True)
class State:
    id: str
    prompt: Prompt
    on_input: OnInput
    # Other states whose buttons this state still takes (see the module docstring).
    accepts: tuple[str, ...] = ()
    # A typed keyword that starts this state's own flow answers the question here instead of
    # starting the flow over (「退会する」 typed at 退会's confirmation is a yes, not a restart).
    takes_entry_words: bool = False


# -- entry points ----------------------------------------------------------------------


@dataclass(frozen=True)
class Postback:
    """A postback whose `action` parameter is this (buttons, rich menu taps)."""

    action: str

    def matches(self, event: Input) -> bool:
        return event.kind == "postback" and event.action.get("action") == self.action


@dataclass(frozen=True)
class Keyword:
    """A text message that is exactly one of the words (after normalisation)."""

    words: tuple[str, ...]

    def __init__(self, *words: str) -> None:
        object.__setattr__(self, "words", tuple(normalize(word) for word in words))

    def matches(self, event: Input) -> bool:
        return event.kind == "text" and normalize(event.text) in self.words


@dataclass(frozen=True)
class Follow:
    def matches(self, event: Input) -> bool:
        return event.kind == "follow"


EntryPoint = Postback | Keyword | Follow


# -- the flow declaration --------------------------------------------------------------


class FlowDeclarationError(Exception):
    """A flow is declared wrongly; raised when the engine is built, not when a customer hits it."""


@dataclass(frozen=True)
class Flow:
    name: str
    entry_points: tuple[EntryPoint, ...]
    states: tuple[State, ...]
    timeout: timedelta = timedelta(minutes=30)
    # Called before the first state; returns False to refuse (it has replied why).
    on_start: Callable[[FlowContext], Awaitable[bool]] | None = None
    # Every transition target is checked against `states` at build time.
    transitions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A tap on one of this flow's buttons after the flow ended: what to tell the customer
    # (replies; without it, `flow_stale_ended`: "start again").
    on_stale: Callable[[FlowContext], Awaitable[None]] | None = None
    # Text keys of button labels that cards of earlier releases sent as plain text.
    stale_texts: tuple[str, ...] = ()

    @property
    def first_state(self) -> str:
        return self.states[0].id

    def state(self, state_id: str) -> State | None:
        return next((state for state in self.states if state.id == state_id), None)


@dataclass(frozen=True)
class Command:
    """A one-shot action with entry points and no states ("クーポン" lists coupons).

    It runs without ending a flow in progress; the flow's question is asked again."""

    name: str
    entry_points: tuple[EntryPoint, ...]
    run: Callable[[FlowContext, Input], Awaitable[None]]


@dataclass(frozen=True)
class PersonRequest:
    """A short text asking for a person, however it is put: the words (担当者, オペレーター, …)
    or a request such as 「担当者と話したいです」「オペレーターにつないでください」
    「人間と話せますか」「担当の方に代わってもらえますか」. Customers rarely type the bare
    keyword, and an FAQ answer to 「担当者と話したいです」 (about how to reach one) would
    tell them to do what they just did. A message that only mentions staff
    (「前回の担当者の方が親切でした」「スタッフのおすすめは？」) is not a request: a verb of
    talking, connecting or swapping must follow the person directly."""

    words: Keyword
    longest: int = 40  # a longer message is about something else, and the FAQ reads it

    # who (人 not inside a word such as 友人, 個人), an optional politeness, then the verb
    PATTERN = re.compile(
        r"(?:担当者?|担当の(?:方|かた|人)|お?係の(?:方|かた|人)|オペレーター|スタッフ|店員|人間|(?<![\u4e00-\u9fff])人|有人(?:対応|チャット)?|"
        r"(?<![\u4e00-\u9fff])ひと)(?:さん|様|さま)?(?:の(?:方|かた))?(?:と|に|へ|で|を)?(?:直接|ちょくせつ)?"
        r"(?:(?:話|はな)(?:す(?:$|には)|した[いく]|せ|させ|して|を|が)|相談(?:したい|でき|させ|を|に乗)|(?:つな|繋)(?:いで|げ|ぎ)|"
        r"(?:代|替|変|か)わ(?:って|れま|れる|りたい)|チャット|(?:お願い|おねがい)(?:します|したい|でき|いた|$)|(?:呼|よ)(?:んで|べ)|(?:出|だ)して)"
    )

    def matches(self, event: Input) -> bool:
        if event.kind != "text":
            return False
        text = normalize(event.text)
        return text in self.words.words or (len(text) <= self.longest and self.PATTERN.search(text) is not None)


# Words that work in every state of every flow.
CANCEL_WORDS = Keyword("やめる", "やめます", "キャンセル", "中止", "cancel", "stop", "quit")
HANDOFF_WORDS = PersonRequest(Keyword("担当者", "オペレーター", "有人", "有人対応", "agent", "human", "operator", "staff please"))


class FlowEngine:
    def __init__(
        self, flows: Iterable[Flow], *, commands: Iterable[Command] = (), side_answerer: SideAnswerer | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        flows = list(flows)
        self.handoff = handoff
        self.flows = {flow.name: flow for flow in flows}
        if len(self.flows) != len(flows):
            raise FlowDeclarationError(f"flow names must be unique: {sorted(flow.name for flow in flows)}")
        self.commands = list(commands)
        self.side_answerer = side_answerer
        _check(self.flows.values())
        for command in self.commands:
            if not command.entry_points:
                raise FlowDeclarationError(f"command {command.name!r} has no entry points")
        _check_entry_points([*self.flows.values(), *self.commands])

    async def handle(self, ctx: FlowContext, event: Input) -> bool:
        """Let a flow take the event; False if no flow wants it (the FAQ may)."""
        current = await flow_states.get(ctx.session, ctx.customer.id)
        timed_out = False
        if current is not None and current.expires_at <= ctx.now:
            await flow_states.clear(ctx.session, ctx.customer.id)
            await ctx.record("flow.timed_out", {"flow": current.flow, "state": current.state})
            await ctx.reply_text("flow_timed_out")
            current, timed_out = None, True

        if event.state is not None and not self._takes(current, event.state):
            await self._stale(ctx, event.state, current, timed_out=timed_out)
            return True
        for flow in self.flows.values():
            if any(entry.matches(event) for entry in flow.entry_points):
                if self._entry_word_answers(current, flow, event):
                    break  # the state in hand reads it (below)
                await self._start(ctx, flow)
                return True
        for command in self.commands:
            if any(entry.matches(event) for entry in command.entry_points):
                await command.run(ctx, event)
                await self._ask_again(ctx, current)
                return True
        if current is None:
            old_button = self._stale_text(event)
            if old_button is not None:
                await self._stale(ctx, old_button, None, timed_out=timed_out)
                return True
            return False

        flow = self.flows.get(current.flow)
        state = flow.state(current.state) if flow else None
        if flow is None or state is None:  # a flow or state removed by a new release
            await flow_states.clear(ctx.session, ctx.customer.id)
            return False
        if CANCEL_WORDS.matches(event) or event.action.get("action") == "cancel":
            await flow_states.clear(ctx.session, ctx.customer.id)
            await ctx.record("flow.cancelled", {"flow": flow.name, "state": state.id})
            await ctx.reply_text("flow_cancelled")
            return True
        if HANDOFF_WORDS.matches(event) or event.action.get("action") == "handoff":
            await flow_states.clear(ctx.session, ctx.customer.id)
            await ctx.record("flow.handed_off", {"flow": flow.name, "state": state.id})
            if self.handoff is not None:
                await self.handoff(ctx, reason="keyword" if event.kind == "text" else "button")
            else:
                await ctx.reply_text("handoff_requested")
            return True

        # A deep copy: the loaded row keeps its value, so nested changes are written too
        # (a JSON column compares the new value with the old one).
        data = copy.deepcopy(current.data or {})
        transition = await state.on_input(ctx, event, data)
        await self._apply(ctx, flow, state, transition, data, event)
        return True

    def _entry_word_answers(self, current, flow: Flow, event: Input) -> bool:
        if current is None or current.flow != flow.name or event.kind != "text":
            return False
        state = flow.state(current.state)
        return state is not None and state.takes_entry_words

    def _takes(self, current, state_id: str) -> bool:
        """Whether the state in hand takes a button of `state_id`."""
        if current is None:
            return False
        if current.state == state_id:
            return True
        flow = self.flows.get(current.flow)
        state = flow.state(current.state) if flow is not None else None
        return state is not None and state_id in state.accepts

    def _stale_text(self, event: Input) -> str | None:
        """The first state of the flow whose old card sent this text (see `Flow.stale_texts`)."""
        if event.kind != "text" or not event.text:
            return None
        said = normalize(event.text)
        for flow in self.flows.values():
            for key in flow.stale_texts:
                if said in (normalize(text) for text in texts.DEFAULTS.get(key, {}).values()):
                    return flow.first_state
        return None

    async def _stale(self, ctx: FlowContext, state_id: str, current, *, timed_out: bool) -> None:
        """A tap on a button of a question no longer asked (see the module docstring)."""
        await ctx.record("flow.stale_button", {"state": state_id, "current": current.state if current is not None else None})
        if timed_out:
            return  # the timeout notice has just said to start again
        if current is not None:
            flow = self.flows.get(current.flow)
            state = flow.state(current.state) if flow is not None else None
            if state is not None:
                await ctx.reply_text("flow_stale_button")
                await state.prompt(ctx, copy.deepcopy(current.data or {}))
                return
        owner = self.flows.get(state_id.split(".", 1)[0])
        if owner is not None and owner.on_stale is not None:
            await owner.on_stale(ctx)
        else:
            await ctx.reply_text("flow_stale_ended")

    async def _ask_again(self, ctx: FlowContext, current) -> None:
        flow = self.flows.get(current.flow) if current is not None else None
        state = flow.state(current.state) if flow is not None else None
        if state is not None:
            await state.prompt(ctx, copy.deepcopy(current.data or {}))

    async def _start(self, ctx: FlowContext, flow: Flow) -> None:
        await flow_states.clear(ctx.session, ctx.customer.id)
        if flow.on_start is not None and not await flow.on_start(ctx):
            return
        await ctx.record("flow.started", {"flow": flow.name})
        await self._enter(ctx, flow, flow.first_state, {})

    async def _enter(self, ctx: FlowContext, flow: Flow, state_id: str, data: dict) -> None:
        await flow_states.save(ctx.session, ctx.customer.id, flow=flow.name, state=state_id, data=data, expires_at=ctx.now + flow.timeout)
        state = flow.state(state_id)
        assert state is not None
        await state.prompt(ctx, data)

    async def _apply(self, ctx: FlowContext, flow: Flow, state: State, transition: Transition, data: dict, event: Input) -> None:
        if isinstance(transition, Goto):
            if flow.state(transition.state) is None:
                raise FlowDeclarationError(f"{state.id} went to unknown state {transition.state!r}")
            await self._enter(ctx, flow, transition.state, data)
        elif isinstance(transition, Done):
            await flow_states.clear(ctx.session, ctx.customer.id)
        else:
            # A question asked mid-flow is answered, then the flow asks again.
            answer = None
            if event.kind == "text" and event.text and self.side_answerer is not None:
                answer = await self.side_answerer(ctx, event.text)
            if answer:
                ctx.reply(*answer)
            elif transition.message:
                ctx.reply({"type": "text", "text": transition.message})
            await self._enter(ctx, flow, state.id, data)


def _check(flows: Iterable[Flow]) -> None:
    seen: set[str] = set()
    for flow in flows:
        if not flow.states:
            raise FlowDeclarationError(f"flow {flow.name!r} has no states")
        if not flow.entry_points:
            raise FlowDeclarationError(f"flow {flow.name!r} has no entry points")
        for state in flow.states:
            if not state.id.startswith(flow.name + "."):
                raise FlowDeclarationError(f"state {state.id!r} must be named {flow.name}.<step>")
            if state.id in seen:
                raise FlowDeclarationError(f"state {state.id!r} is declared twice")
            seen.add(state.id)
        ids = {state.id for state in flow.states}
        for state in flow.states:
            for other in state.accepts:
                if other not in ids:
                    raise FlowDeclarationError(f"state {state.id!r} accepts buttons of unknown state {other!r}")
        for key in flow.stale_texts:
            if key not in texts.DEFAULTS:
                raise FlowDeclarationError(f"flow {flow.name!r}: stale_texts names unknown bot text {key!r}")
        for source, targets in flow.transitions.items():
            for target in (source, *targets):
                if target not in ids:
                    raise FlowDeclarationError(f"flow {flow.name!r}: transition names unknown state {target!r}")


def _check_entry_points(owners: list[Flow | Command]) -> None:
    """The first flow or command whose entry point matches wins, so two claiming the same
    postback action or keyword would silently disable one of them."""
    claimed: dict[tuple[str, str], str] = {}
    for owner in owners:
        for entry in owner.entry_points:
            if isinstance(entry, Postback):
                keys = [("postback", entry.action)]
            elif isinstance(entry, Keyword):
                keys = [("keyword", word) for word in entry.words]
            else:
                keys = [("follow", "")]
            for key in keys:
                other = claimed.setdefault(key, owner.name)
                if other != owner.name:
                    raise FlowDeclarationError(f"{owner.name!r} and {other!r} both start on {key[0]} {key[1]!r}")
