"""ステップ配信 (admins and marketers): step sequences — the list, the editor, a sequence's page.

The rules are campaigns/sequences.py's, as for the REST API (api/sequences.py): the editor's form
becomes a `SequenceCreate` and goes to `sequences.create` or `sequences.update`; what they refuse
is shown beside the field it names (`steps[1].messages[0].text` at the second step's first message).

- The editor: a name, the trigger with its value (a tag, a friend-add source, a segment, an API
  event type), exit conditions, events that cancel, a send window, and the steps drawn as a
  vertical timeline (day 0 → day 3 → day 7): each a delay (days and hours after the previous step
  or after entry), 1–5 messages with the campaign editor's message slots and LINE-like preview
  (templates/_message_slots.html, static/campaigns.js), and an optional coupon.
- Editing a sequence with customers in it: they keep their place (campaigns/sequences.py
  `update`); the page says so.
- A sequence's page: its figures (enrolled, active, completed, exited by reason) and per step the
  deliveries sent and failed and the orders attributed within 7 days (storage/sequences.py
  `step_results`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import ValidationError

from kizuna.campaigns import segments, sequences
from kizuna.storage import coupons, friend_sources
from kizuna.storage import sequences as store
from kizuna.storage.errors import Invalid, NotFound, ServiceError
from kizuna.storage.models import SEQUENCE_NAME_MAX, SequenceStatus, SequenceTrigger, StepSequence

from .. import forms
from ..context import CONTEXT, db, services_of
from ..i18n import MESSAGES
from ..render import render
from ..routes import MARKETING, Refused, route, see_other
from .campaigns import KINDS, PREVIEW_NAME, SLOTS, Slot, _messages, _preview, _read_slots

ID = "{sequence_id:[0-9]{1,9}}"
MOVES = ("pause", "resume")
TRIGGERS = tuple(SequenceTrigger)
# Which input holds the trigger's value (none for registered and first_order).
VALUE_INPUT = {SequenceTrigger.TAG_ADDED: "trigger_tag", SequenceTrigger.FRIEND_SOURCE: "trigger_source",
               SequenceTrigger.API_EVENT: "trigger_event", SequenceTrigger.SEGMENT_ENTERED: "trigger_segment"}
DELAY_FROM = tuple(sequences.DelayFrom)
NOTICES = ("created", "updated", "pause", "resume")
# A refusal of a step: `steps[1].messages[0].text`, `steps[1].delay_days`, `steps[1]` …
_STEP_FIELD = re.compile(r"^steps\[(\d+)\](?:\.(\w+)(?:\[(\d+)\])?)?")


# -- the editor's form ------------------------------------------------------------------------


@dataclass
class StepForm:
    days: str = "0"
    hours: str = "0"
    minutes: str = "0"  # (the API takes minutes: a sequence made there keeps them when edited here)
    delay_from: str = sequences.DelayFrom.PREVIOUS.value
    slots: list[Slot] = field(default_factory=lambda: [Slot()])
    coupon: str = ""


@dataclass
class Editor:
    name: str = ""
    trigger: str = SequenceTrigger.REGISTERED.value
    values: dict[str, str] = field(default_factory=dict)  # {"trigger_tag": "…", …}
    ordered_again: bool = True
    tag_removed: bool = False
    exit_tag: str = ""
    cancel_on: str = ""  # event types, comma separated
    window: bool = False
    window_start: str = "09:00"
    window_end: str = "21:00"
    name_fallback: str = "お客様"
    steps: list[StepForm] = field(default_factory=lambda: [StepForm()])


def _read(form) -> Editor:
    count = forms.whole_number(str(form.get("steps", "1")))
    count = min(max(count if isinstance(count, int) else 1, 1), sequences.STEPS_MAX)
    steps = [StepForm(days=str(form.get(f"s{i}_days", "0"))[:10], hours=str(form.get(f"s{i}_hours", "0"))[:10],
                      minutes=str(form.get(f"s{i}_minutes", "0"))[:10],
                      delay_from=str(form.get(f"s{i}_from", "previous"))[:20], slots=_read_slots(form, f"s{i}m"),
                      coupon=str(form.get(f"s{i}_coupon", ""))[:10])
             for i in range(count)]
    return Editor(
        name=str(form.get("name", ""))[:300], trigger=str(form.get("trigger", ""))[:30],
        values={name: str(form.get(name, ""))[:200] for name in VALUE_INPUT.values()},
        ordered_again=form.get("ordered_again") == "on", tag_removed=form.get("tag_removed") == "on",
        exit_tag=str(form.get("exit_tag", ""))[:100], cancel_on=str(form.get("cancel_on", ""))[:1000],
        window=form.get("window") == "on", window_start=str(form.get("window_start", ""))[:10],
        window_end=str(form.get("window_end", ""))[:10], name_fallback=str(form.get("name_fallback", ""))[:100], steps=steps,
    )


def _from_sequence(sequence: StepSequence) -> Editor:
    """The form of a stored sequence (to edit it)."""
    values = {name: "" for name in VALUE_INPUT.values()}
    if sequence.trigger in VALUE_INPUT:
        values[VALUE_INPUT[SequenceTrigger(sequence.trigger)]] = sequence.trigger_value or ""
    steps = []
    for step in sequence.steps:
        minutes = int(step.get("delay_minutes", 0))
        slots = [Slot(kind="image", image=m.get("originalContentUrl", "")) if m.get("type") == "image"
                 else Slot(text=m.get("text", "")) for m in step["messages"]]
        steps.append(StepForm(days=str(minutes // 1440), hours=str(minutes % 1440 // 60), minutes=str(minutes % 60), delay_from=step.get("delay_from", "previous"),
                              slots=slots or [Slot()], coupon=str(step.get("coupon_id") or "")))
    return Editor(
        name=sequence.name, trigger=sequence.trigger, values=values, ordered_again=sequence.exit_on_order,
        tag_removed=sequence.exit_on_tag_removed is not None, exit_tag=sequence.exit_on_tag_removed or "",
        cancel_on=", ".join(sequence.cancel_on or []), window=bool(sequence.window_start),
        window_start=sequence.window_start or "09:00", window_end=sequence.window_end or "21:00",
        name_fallback=sequence.name_fallback, steps=steps or [StepForm()],
    )


def _number(text: str, where: str) -> int:
    value = forms.whole_number(text)
    if value is None:
        return 0
    if not isinstance(value, int):
        raise Invalid(where, "must be a whole number")
    return value


def _body(editor: Editor) -> sequences.SequenceCreate:
    """The form as the service's body (pydantic's refusals become `Invalid` naming the field)."""
    trigger = editor.trigger
    value_input = VALUE_INPUT.get(trigger) if trigger in TRIGGERS else None
    exit_on = ([sequences.ExitCondition.ORDERED_AGAIN] if editor.ordered_again else []) + \
              ([sequences.ExitCondition.TAG_REMOVED] if editor.tag_removed else [])
    steps = []
    for index, step in enumerate(editor.steps):
        coupon = step.coupon.strip()
        if coupon and not coupon.isdigit():
            raise Invalid(f"steps[{index}].coupon_id", "no such coupon")
        steps.append({"delay_days": _number(step.days, f"steps[{index}].delay_days"),
                      "delay_hours": _number(step.hours, f"steps[{index}].delay_hours"),
                      "delay_minutes": _number(step.minutes, f"steps[{index}].delay_minutes"),
                      "delay_from": step.delay_from if index else sequences.DelayFrom.ENROLMENT.value,
                      "messages": _messages(step.slots), "coupon_id": int(coupon) if coupon else None})
    raw = {
        "name": editor.name, "trigger": trigger,
        "trigger_value": (editor.values.get(value_input, "").strip() or None) if value_input else None,
        "exit_on": exit_on, "exit_tag": editor.exit_tag.strip() or None,
        "cancel_on": [item.strip() for item in re.split(r"[,、\s]+", editor.cancel_on) if item.strip()],
        "send_window": {"start": editor.window_start, "end": editor.window_end} if editor.window else None,
        "name_fallback": editor.name_fallback.strip() or "お客様", "steps": steps,
    }
    try:
        return sequences.SequenceCreate.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in first["loc"]).replace(".[", "[")
        raise Invalid(where or "body", first["msg"]) from None


def _problems(error: ServiceError) -> dict[str, forms.Problem]:
    """{field of the form: Problem}: a step's refusal at its step (`s1`) or its message slot (`s1m0`)."""
    if not isinstance(error, Invalid):
        return forms.problems(error, "sequence")
    detail = f"{error.field}: {error.message}"
    step = _STEP_FIELD.match(error.field)
    if step is not None:
        index, part, position = step.group(1), step.group(2), step.group(3)
        if part == "messages" and position is not None:
            return {f"msg-s{index}-{position}": forms.Problem("invalid.sequence.message", detail)}
        if part == "coupon_id":
            return {f"s{index}_coupon": forms.Problem("invalid.sequence.coupon", detail)}
        if part in ("delay_days", "delay_hours", "delay_minutes"):
            return {f"s{index}_delay": forms.Problem("invalid.sequence.delay", detail)}
        if part == "messages" and "message" in error.message and "item" not in error.message:
            # The service checks a step's messages as a list: a text too long or a type unknown.
            return {f"s{index}_messages": forms.Problem("invalid.sequence.message", detail)}
        if part == "messages" or (part is None and "coupon" in error.message):
            return {f"s{index}_messages": forms.Problem("invalid.sequence.messages", detail)}
        return {f"s{index}_messages": forms.Problem("invalid.field", detail)}
    name = error.field.split(".")[0].split("[")[0]
    if name == "trigger_value":
        name = "trigger"
    if name == "send_window":
        name = "window"
    key = f"invalid.sequence.{name}"
    return {name: forms.Problem(key if key in MESSAGES else "invalid.field", detail)}


def _slot_problems(errors: dict, editor: Editor) -> dict[str, forms.Problem]:
    """A message's refusal names its place among the step's messages sent (empty slots are skipped):
    shown at the slot the marketer sees ({"s1m2": problem})."""
    out = {}
    for key, problem in errors.items():
        if key.startswith("msg-s"):
            _, step, position = key.split("-")
            index = int(step[1:])
            if index >= len(editor.steps):
                continue
            used = [i for i, slot in enumerate(editor.steps[index].slots) if not slot.empty]
            position = int(position)
            out[f"s{index}m{used[position] if position < len(used) else position}"] = problem
    return out


def offsets(delays: list[tuple[int, str]]) -> list[int]:
    """Minutes after entry at which each step goes out (before send windows): a step's delay counts
    from entry or from the previous step."""
    at, out = 0, []
    for index, (minutes, delay_from) in enumerate(delays):
        at = minutes if index == 0 or delay_from == sequences.DelayFrom.ENROLMENT else at + minutes
        out.append(at)
    return out


def when_words(ctx, minutes: int) -> str:
    """「当日」, 「3日後」, 「3日と4時間後」, 「5時間後」 (after entry)."""
    days, hours = minutes // 1440, minutes % 1440 // 60
    if not days and not hours:
        return ctx.t("sequences.when.at_once") if not minutes else ctx.t("sequences.when.minutes", n=minutes)
    if days and hours:
        return ctx.t("sequences.when.days_hours", days=days, hours=hours)
    return ctx.t("sequences.when.days", n=days) if days else ctx.t("sequences.when.hours", n=hours)


def _form_minutes(step: StepForm) -> int:
    days, hours, minutes = (forms.whole_number(value) for value in (step.days, step.hours, step.minutes))
    return sum((value if isinstance(value, int) else 0) * unit for value, unit in ((days, 1440), (hours, 60), (minutes, 1)))


async def _choices(session) -> dict:
    return {
        "saved": await segments.list_page(session, limit=500, after=None),
        "sources": [row.source for row in await friend_sources.stats(session, include_archived=False)],
        "coupons": await coupons.list_coupons(session, active=True, limit=200),
    }


async def _editor_page(request: web.Request, editor: Editor, *, sequence: StepSequence | None = None, errors: dict | None = None,
                       status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    async with db(request) as session:
        choices = await _choices(session)
        enrolled = (await store.figures(session, sequence)).active if sequence is not None else 0
    by_id = {str(c.id): c for c in choices["coupons"]}
    at = offsets([(_form_minutes(step), step.delay_from if index else "enrolment") for index, step in enumerate(editor.steps)])
    steps = [{"form": step, "at": at[index], "when": when_words(ctx, at[index]),
              "gap": when_words(ctx, at[index] - at[index - 1]) if index else None,
              "preview": _preview(_messages(step.slots)), "coupon": by_id.get(step.coupon.strip())}
             for index, step in enumerate(editor.steps)]
    errors = errors or {}
    return render(request, "sequence_editor.html", {
        "editor": editor, "sequence": sequence, "errors": errors, "slot_errors": _slot_problems(errors, editor),
        "steps": steps, "steps_max": sequences.STEPS_MAX, "slots_max": SLOTS, "kinds": KINDS, "triggers": TRIGGERS,
        "value_input": {str(k): v for k, v in VALUE_INPUT.items()}, "delay_from": DELAY_FROM, "preview_name": PREVIEW_NAME,
        "name_max": SEQUENCE_NAME_MAX, "enrolled": enrolled, **choices,
    }, status=status)


async def _sequence(request: web.Request, session) -> StepSequence:
    try:
        return await store.get(session, int(request.match_info["sequence_id"]))
    except NotFound:
        raise Refused(404, "error.404") from None


def _edit_action(editor: Editor, action: str) -> bool:
    """The editor's own buttons (add or remove a step or a message slot): True when one was pressed."""
    if action == "add-step":
        if len(editor.steps) < sequences.STEPS_MAX:
            days = 3 if editor.steps else 0
            editor.steps.append(StepForm(days=str(days)))
        return True
    kind, _, rest = action.partition("-")  # remove-step-2, add-s1m, remove-s1m-0
    if kind == "remove" and rest.startswith("step-") and rest[5:].isdigit():
        kept = [step for index, step in enumerate(editor.steps) if index != int(rest[5:])]
        editor.steps = kept or [StepForm()]
        return True
    match = re.fullmatch(r"s(\d+)m(?:-(\d+))?", rest)
    if kind in ("add", "remove") and match and int(match.group(1)) < len(editor.steps):
        slots = editor.steps[int(match.group(1))].slots
        if kind == "add" and match.group(2) is None and len(slots) < SLOTS:
            slots.append(Slot())
        elif kind == "remove" and match.group(2) is not None:
            slots[:] = [slot for index, slot in enumerate(slots) if index != int(match.group(2))] or [Slot()]
        return True
    return action not in ("save",)  # anything else (Enter in a field): re-render, nothing saved


async def sequence_new(request: web.Request) -> web.StreamResponse:
    return await _editor_page(request, Editor())


async def sequence_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    editor = _read(form)
    if _edit_action(editor, str(form.get("action", "save"))):
        return await _editor_page(request, editor)
    try:
        async with db(request) as session:
            sequence = await sequences.create(session, _body(editor), created_by=request[CONTEXT].staff.email,
                                              now=services_of(request).clock())
    except ServiceError as error:
        return await _editor_page(request, editor, errors=_problems(error), status=400)
    url = request.app.router["sequence"].url_for(sequence_id=str(sequence.id))
    return see_other(url.with_query({"notice": "created"}))


async def sequence_edit(request: web.Request) -> web.StreamResponse:
    async with db(request) as session:
        sequence = await _sequence(request, session)
    return await _editor_page(request, _from_sequence(sequence), sequence=sequence)


async def sequence_update(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    editor = _read(form)
    async with db(request) as session:
        sequence = await _sequence(request, session)
    if _edit_action(editor, str(form.get("action", "save"))):
        return await _editor_page(request, editor, sequence=sequence)
    try:
        async with db(request) as session:
            await sequences.update(session, sequence.id, _body(editor), now=services_of(request).clock())
    except NotFound:
        raise Refused(404, "error.404") from None
    except ServiceError as error:
        return await _editor_page(request, editor, sequence=sequence, errors=_problems(error), status=400)
    url = request.app.router["sequence"].url_for(sequence_id=str(sequence.id))
    return see_other(url.with_query({"notice": "updated"}))


# -- the list and a sequence's page -----------------------------------------------------------


async def trigger_words(ctx, session, sequence: StepSequence, names: dict) -> str:
    """The trigger in words: 「タグ「VIP」が付いたとき」."""
    value = sequence.trigger_value or ""
    if sequence.trigger == SequenceTrigger.SEGMENT_ENTERED and value.isdigit():
        if value not in names:
            try:
                names[value] = (await segments.get(session, int(value))).name
            except NotFound:
                names[value] = f"#{value}"
        value = names[value]
    elif sequence.trigger == SequenceTrigger.FRIEND_SOURCE:
        source = await friend_sources.by_code(session, value)
        value = source.name if source is not None else value
    return ctx.t(f"sequences.trigger.words.{sequence.trigger}", value=value)


async def sequence_list(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    rows, names = [], {}
    async with db(request) as session:
        for sequence in await store.list_all(session):
            rows.append({"sequence": sequence, "figures": await store.figures(session, sequence),
                         "trigger": await trigger_words(ctx, session, sequence, names), "steps": len(sequence.steps)})
    return render(request, "sequences.html", {"rows": rows, "notice": _notice(request)})


async def sequence_page(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    async with db(request) as session:
        sequence = await _sequence(request, session)
        figures = await store.figures(session, sequence)
        results = await store.step_results(session, sequence.id, len(sequence.steps))
        trigger = await trigger_words(ctx, session, sequence, {})
        coupon_ids = {step.get("coupon_id") for step in sequence.steps if step.get("coupon_id")}
        step_coupons = {cid: await coupons.get_coupon(session, cid) for cid in coupon_ids}
    at = offsets([(int(step.get("delay_minutes", 0)), step.get("delay_from", "previous")) for step in sequence.steps])
    steps = [{"index": index, "when": when_words(ctx, at[index]), "gap": when_words(ctx, at[index] - at[index - 1]) if index else None,
              "delay_from": step.get("delay_from"), "preview": _preview(step["messages"]), "coupon": step_coupons.get(step.get("coupon_id")),
              "figures": figures.steps[index], "result": results[index]}
             for index, step in enumerate(sequence.steps)]
    return render(request, "sequence.html", {
        "sequence": sequence, "figures": figures, "steps": steps, "trigger": trigger, "notice": _notice(request),
        "exits": sequences.exit_conditions(sequence), "moves": _moves(sequence), "preview_name": PREVIEW_NAME,
        "window_days": store.ATTRIBUTION_WINDOW.days, "error": ctx.t("sequences.conflict") if request.query.get("error") else None,
    })


def _moves(sequence: StepSequence) -> tuple[str, ...]:
    return {SequenceStatus.ACTIVE: ("pause",), SequenceStatus.PAUSED: ("resume",)}.get(sequence.status, ())


def _notice(request: web.Request) -> str | None:
    value = request.query.get("notice")
    return f"sequences.notice.{value}" if value in NOTICES else None


async def sequence_move(request: web.Request) -> web.StreamResponse:
    """一時停止 / 再開 (from the list or the sequence's page: `back` says which to return to)."""
    action = request.match_info["action"]
    sequence_id = int(request.match_info["sequence_id"])
    try:
        async with db(request) as session:
            move = sequences.pause if action == "pause" else sequences.resume
            await move(session, sequence_id, now=services_of(request).clock())
    except NotFound:
        raise Refused(404, "error.404") from None
    back = (await request.post()).get("back") == "list"
    url = request.app.router["sequences"].url_for() if back else request.app.router["sequence"].url_for(sequence_id=str(sequence_id))
    return see_other(url.with_query({"notice": action}))


ROUTES = [
    route("GET", "/sequences", sequence_list, name="sequences", roles=MARKETING),
    route("GET", "/sequences/new", sequence_new, name="sequence_new", roles=MARKETING),
    route("POST", "/sequences/new", sequence_create, name="sequence_create", roles=MARKETING),
    route("GET", f"/sequences/{ID}", sequence_page, name="sequence", roles=MARKETING),
    route("GET", f"/sequences/{ID}/edit", sequence_edit, name="sequence_edit", roles=MARKETING),
    route("POST", f"/sequences/{ID}/edit", sequence_update, name="sequence_update", roles=MARKETING),
    route("POST", f"/sequences/{ID}/{{action:{'|'.join(MOVES)}}}", sequence_move, name="sequence_move", roles=MARKETING),
]
