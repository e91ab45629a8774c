"""What each state of the registration and profile flows does (declared in flow.py).

Nothing about the customer is stored before they confirm: answers wait in the flow's
data (the `flow_states` row, deleted when the flow ends) and the consent time with
them; `complete` writes them to the customer in the event's transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from kizuna.flows.coupons import coupon_flex, load_words
from kizuna.flows.engine import Done, FlowContext, Goto, Input, Retry, State, Transition, step_data
from kizuna.storage import automations, consents, coupons, customers, identities, sequences
from kizuna.storage.models import AutomationTrigger, ConsentAction, ConsentChannel, ConsentPurpose, SequenceTrigger

from . import bot_texts as _texts  # noqa: F401  (registers the default texts)
from .fields import (
    BY_STEP,
    FIELDS,
    PROFILE_FIELDS,
    Field,
    NoAnswer,
    answer_item,
    ask,
    button,
    comparable,
    invalid,
    postback_item,
    read,
    summary_bubble,
    summary_rows,
    utc_iso,
)
from .validators import InvalidInput

REGISTRATION = "registration"
PROFILE = "profile"
CONSENT = "registration.consent"
CONFIRM = "registration.confirm"
EDIT = "registration.edit"
PROFILE_CHOOSE = "profile.edit"


def state_id(flow: str, field: Field) -> str:
    return f"{flow}.{field.step}"


# -- buttons other modules offer ------------------------------------------------------------


async def registration_offer(ctx: Any) -> dict:
    """The quick-reply button that starts registration (after the greeting, in invitations).
    `ctx` is anything with `async text(key)`: a flow's or a handler's context."""
    label = await ctx.text("registration_offer_label")
    return postback_item(label, "action=register", label)


async def _member_info_offer(ctx: FlowContext) -> dict:
    label = await ctx.text("member_info_label")
    return postback_item(label, "action=member_info", label)


async def _invite(ctx: FlowContext) -> None:
    """Member info and the like, asked by a customer who is not a member: how to become one
    (the registration coupon is mentioned only when the shop gives one)."""
    gift = await coupons.registration_coupon(ctx.session)
    if gift is not None and ctx.customer.withdrawn_at is None:  # the sign-up coupon is given once
        await ctx.reply_text("member_info_not_registered_gift", quick_reply=[await registration_offer(ctx)], title=gift.title)
    else:
        await ctx.reply_text("member_info_not_registered", quick_reply=[await registration_offer(ctx)])


async def registration_stale(ctx: FlowContext) -> None:
    """A button of a registration that has ended (the summary's 登録する on an old card ...)."""
    if ctx.customer.registered:
        await ctx.reply_text("registration_stale_registered", quick_reply=[await _member_info_offer(ctx)])
    else:
        await ctx.reply_text("registration_stale_restart", quick_reply=[await registration_offer(ctx)])


async def profile_stale(ctx: FlowContext) -> None:
    """A button of a change of details that has ended."""
    label = await ctx.text("member_info_edit")
    await ctx.reply_text("profile_stale", quick_reply=[postback_item(label, "action=profile_edit", label)])


# -- matching a tapped or typed choice ------------------------------------------------------


async def _choice(ctx: FlowContext, event: Input, options: dict[str, tuple[str, ...]]) -> str | None:
    """Which option the customer chose: a button's value, or the text naming it
    (option -> (label text key, other accepted words...))."""
    if event.kind == "postback":
        return event.value if event.value in options else None
    if event.kind != "text" or not event.text:
        return None
    said = comparable(event.text)
    for option, (label_key, *words) in options.items():
        if said == comparable(await ctx.text(label_key)) or said in {comparable(word) for word in words}:
            return option
    return None


async def _field_chosen(ctx: FlowContext, event: Input, fields: tuple[Field, ...]) -> Field | None:
    """A field picked from the edit list: its button (`action=edit&field=birthday`) or its name typed."""
    if event.kind == "postback" and event.action.get("action") == "edit":
        field = BY_STEP.get(event.action.get("field", ""))
        return field if field in fields else None
    if event.kind == "text" and event.text:
        for field in fields:
            if comparable(event.text) == comparable(await ctx.text(field.label_key)):
                return field
    return None


async def _ask_which_field(ctx: FlowContext, fields: tuple[Field, ...], question_key: str, state: str, extra: Sequence[dict] = ()) -> None:
    items = []
    for field in fields:
        label = await ctx.text(field.label_key)
        items.append(postback_item(label, f"action=edit&field={field.step}&state={state}", label))
    await ctx.reply_text(question_key, quick_reply=[*items, *extra])


# -- the per-field states, one factory for both flows ---------------------------------------

After = Callable[[FlowContext, Field, Any, dict], Awaitable[Transition]]
Current = Callable[[FlowContext, Field, dict], Any]


def field_state(flow: str, field: Field, *, after: After, current: Current) -> State:
    """Ask the field's question; on a valid answer, `after` decides where to go."""

    async def prompt(ctx: FlowContext, data: dict) -> None:
        await ask(ctx, field, current(ctx, field, data), state=state_id(flow, field))

    async def on_input(ctx: FlowContext, event: Input, data: dict) -> Transition:
        try:
            value = await read(ctx, field, event)
        except NoAnswer:
            return Retry()
        except InvalidInput as error:
            return Retry(await invalid(ctx, field, error))
        return await after(ctx, field, value, data)

    return State(state_id(flow, field), prompt, on_input)


# -- registration -----------------------------------------------------------------------------


async def refuse_if_registered(ctx: FlowContext) -> bool:
    if ctx.customer.registered:
        await ctx.reply_text("registration_already", quick_reply=[await _member_info_offer(ctx)])
        return False
    return True


async def ask_consent(ctx: FlowContext, data: dict) -> None:
    yes, no = await ctx.text("registration_consent_yes"), await ctx.text("registration_consent_no")
    # Publishing a notice version sets this text to its address (storage/consents.py).
    url = await ctx.text("privacy_policy_url")
    await ctx.reply_text("registration_consent", url=url, quick_reply=[answer_item(yes, CONSENT, "yes"), answer_item(no, CONSENT, "no")])


_CONSENT = {
    "no": ("registration_consent_no", "同意しない", "同意しません", "しない", "いいえ", "no", "disagree", "i don't agree", "decline"),
    "yes": ("registration_consent_yes", "同意する", "同意します", "同意", "はい", "yes", "agree", "i agree", "ok"),
}


async def on_consent(ctx: FlowContext, event: Input, data: dict) -> Transition:
    answer = await _choice(ctx, event, _CONSENT)
    if answer == "yes":
        data["consented_at"] = utc_iso(ctx.now)
        # The version shown is the version accepted, even if a newer one is published before the end.
        notice = await consents.current_notice(ctx.session)
        data["notice_id"] = notice.id if notice is not None else None
        return Goto(state_id(REGISTRATION, FIELDS[0]))
    if answer == "no":
        # Nothing was kept; the engine deletes the flow's row on Done.
        await ctx.reply_text("registration_declined")
        return Done()
    return Retry(await ctx.text("registration_consent_invalid") if event.kind == "text" else None)


def _answers(data: dict) -> dict[str, Any]:
    """The answers so far, by column, as Python values."""
    stored = data.get("values") or {}
    return {field.column: field.load(stored.get(field.column)) for field in FIELDS}


def _current_answer(ctx: FlowContext, field: Field, data: dict) -> Any:
    return _answers(data).get(field.column)


async def remember(ctx: FlowContext, field: Field, value: Any, data: dict) -> Transition:
    """Keep the answer in the flow's data; next question, or back to confirm after an edit."""
    data.setdefault("values", {})[field.column] = field.dump(value)
    index = FIELDS.index(field)
    if data.pop("editing", False) or index == len(FIELDS) - 1:
        return Goto(CONFIRM)
    return Goto(state_id(REGISTRATION, FIELDS[index + 1]))


_CONFIRM = {
    "ok": ("registration_confirm_ok", "登録する", "登録します", "はい", "ok", "confirm", "yes"),
    "edit": ("registration_confirm_edit", "修正する", "修正", "修正します", "変更", "変更する", "edit", "change"),
}


async def show_confirm(ctx: FlowContext, data: dict) -> None:
    ok, edit = await ctx.text("registration_confirm_ok"), await ctx.text("registration_confirm_edit")
    title = await ctx.text("registration_confirm_title")
    # Postbacks that name this state: a tap on an old card is told apart (engine.py).
    ok_action = {"type": "postback", "data": step_data(CONFIRM, "ok"), "displayText": ok}
    edit_action = {"type": "postback", "data": step_data(CONFIRM, "edit"), "displayText": edit}
    bubble = summary_bubble(
        title, await summary_rows(ctx, _answers(data)), lead=await ctx.text("registration_confirm"),
        buttons=[button(ok, ok_action, primary=True), button(edit, edit_action)],
    )
    # altText shows in notifications: the title only, never the customer's details.
    ctx.reply({"type": "flex", "altText": title, "contents": bubble,
               "quickReply": {"items": [answer_item(ok, CONFIRM, "ok"), answer_item(edit, CONFIRM, "edit")]}})


async def on_confirm(ctx: FlowContext, event: Input, data: dict) -> Transition:
    field = await _field_chosen(ctx, event, FIELDS)  # a button of the edit list tapped again
    if field is not None:
        data["editing"] = True
        return Goto(state_id(REGISTRATION, field))
    answer = await _choice(ctx, event, _CONFIRM)
    if answer == "ok":
        return await complete(ctx, data)
    if answer == "edit":
        return Goto(EDIT)
    return Retry(await ctx.text("registration_confirm_invalid") if event.kind == "text" else None)


async def ask_field_to_edit(ctx: FlowContext, data: dict) -> None:
    back = await ctx.text("registration_edit_back")
    await _ask_which_field(ctx, FIELDS, "registration_edit_which", EDIT, [answer_item(back, EDIT, "back")])


async def on_field_to_edit(ctx: FlowContext, event: Input, data: dict) -> Transition:
    field = await _field_chosen(ctx, event, FIELDS)
    if field is not None:
        data["editing"] = True
        return Goto(state_id(REGISTRATION, field))
    if await _choice(ctx, event, {"back": ("registration_edit_back", "戻る", "もどる", "back")}):
        return Goto(CONFIRM)
    return Retry()


async def complete(ctx: FlowContext, data: dict) -> Transition:
    """Store everything, in the event's transaction: the customer's columns, the timeline,
    the coupon; the rich menu switches after the commit."""
    customer = ctx.customer
    if customer.registered:  # registered meanwhile (another device, the API)
        await ctx.reply_text("registration_already", quick_reply=[await _member_info_offer(ctx)])
        return Done()
    if "consented_at" not in data:
        return Goto(CONSENT)
    answers = _answers(data)
    missing = next((f for f in FIELDS if not f.optional and answers.get(f.column) is None), None)
    if missing is not None:  # a field added by a release while this flow was waiting
        data["editing"] = True
        return Goto(state_id(REGISTRATION, missing))

    marketing = bool(answers.pop("marketing_opt_in"))
    customers.complete_registration(
        customer, profile=answers, marketing_opt_in=marketing,
        consented_at=datetime.fromisoformat(data["consented_at"]), at=ctx.now,
    )
    # The consent ledger: the notice accepted (membership, analytics) and the marketing choice.
    notice_id = data.get("notice_id")
    if notice_id is None and "notice_id" not in data:  # consented before this release: the current one
        current = await consents.current_notice(ctx.session)
        notice_id = current.id if current is not None else None
    customer.privacy_notice_id = notice_id
    consented_at = datetime.fromisoformat(data["consented_at"])
    consents.record(ctx.session, customer.id, consents.NOTICE_PURPOSES, ConsentAction.GRANTED,
                    channel=ConsentChannel.LINE_CHAT, at=consented_at, notice_id=notice_id)
    consents.record(ctx.session, customer.id, (ConsentPurpose.MARKETING,),
                    ConsentAction.GRANTED if marketing else ConsentAction.WITHDRAWN,
                    channel=ConsentChannel.LINE_CHAT, at=ctx.now, notice_id=notice_id)
    # An e-mail or phone given here links the customer to what the shop's systems know by it
    # (an EC account's orders): a customer already holding one becomes a merge candidate.
    await identities.link_profile(ctx.session, customer, source="registration", now=ctx.now)
    # Step sequences that start on registration, in this transaction (nothing lost on a crash).
    await sequences.enrol(ctx.session, SequenceTrigger.REGISTERED, customer_ids=[customer.id], now=ctx.now)
    await automations.record(ctx.session, AutomationTrigger.REGISTRATION_COMPLETED, [customer.id], now=ctx.now)
    # The timeline is append-only: it says what was given, the values live on the customer.
    await ctx.record("registered", {"fields": [column for column, value in answers.items() if value is not None], "marketing_opt_in": marketing})
    if marketing:
        await ctx.record("marketing.opted_in", {"via": "registration"})
    await ctx.reply_text("registration_completed")
    ctx.reply(*await _issue_registration_coupon(ctx))
    ctx.after_commit({"type": "rich_menu", "menu": "registered"})
    return Done()


async def _issue_registration_coupon(ctx: FlowContext) -> list[dict]:
    """The welcome coupon's messages; a word of apology when the shop offers one but none
    is left to give; nothing when the shop offers none.

    `coupons.issue` keeps one grant per customer and the stock in the database, and
    puts `coupon.issued` on the timeline."""
    coupon = await coupons.registration_coupon(ctx.session)
    if coupon is None:
        return []  # the shop gives no registration coupon: nothing to say about one
    if ctx.customer.withdrawn_at is not None:
        # A returning member (withdrew, registered again) is not given the sign-up coupon twice,
        # whether or not the coupon is one-per-customer or the same coupon as then.
        return [{"type": "text", "text": await ctx.text("registration_coupon_not_again")}]
    result = await coupons.issue(ctx.session, coupon_id=coupon.id, customer_id=ctx.customer.id, now=ctx.now)
    if result.grant is None:  # offered, but none left (out of stock, ended)
        return [{"type": "text", "text": await ctx.text("registration_coupon_unavailable")}]
    if not result.created:
        return []  # given before (by staff, say): theirs already, nothing new to show
    shop = await coupons.get_shop(ctx.session)
    flex = coupon_flex(
        result.grant, result.coupon or coupon, public_url=ctx.services.public_url, locale=ctx.locale,
        words=await load_words(ctx.session, ctx.locale), tz=coupons.zone(shop.timezone),
    )
    return [{"type": "text", "text": await ctx.text("registration_coupon_intro")}, flex]


# -- member info, profile changes, marketing consent -------------------------------------------


async def reply_member_info(ctx: FlowContext) -> None:
    customer = ctx.customer
    values = {field.column: getattr(customer, field.column) for field in FIELDS}
    if customer.marketing_opt_in:
        toggle_label, toggle_data = await ctx.text("marketing_stop_label"), "action=marketing&value=off"
    else:
        toggle_label, toggle_data = await ctx.text("marketing_start_label"), "action=marketing&value=on"
    edit_label = await ctx.text("member_info_edit")
    withdraw_label = await ctx.text("member_info_withdraw")
    title = await ctx.text("member_info_title")
    buttons = [
        button(edit_label, {"type": "postback", "data": "action=profile_edit", "displayText": edit_label}, primary=True),
        button(toggle_label, {"type": "postback", "data": toggle_data, "displayText": toggle_label}),
    ]
    notice = await consents.current_notice(ctx.session)
    lead = None
    if consents.needs_acceptance(customer, notice):
        # A newer notice than the one accepted: asked here, on the member's own card (not pushed).
        lead = await ctx.text("privacy_updated")
        read_label, accept_label = await ctx.text("privacy_read_label"), await ctx.text("privacy_accept_label")
        buttons = [
            button(accept_label, {"type": "postback", "data": f"action=privacy_accept&notice={notice.id}", "displayText": accept_label},
                   primary=True),
            button(read_label, {"type": "uri", "uri": notice.url}),
            *[{**item, "style": "secondary"} for item in buttons],
        ]
    buttons.append({**button(withdraw_label, {"type": "postback", "data": "action=withdraw", "displayText": withdraw_label}),
                    "style": "link"})
    bubble = summary_bubble(title, await summary_rows(ctx, values), lead=lead, buttons=buttons)
    ctx.reply({"type": "flex", "altText": title, "contents": bubble})


async def accept_privacy_notice(ctx: FlowContext, event: Input) -> None:
    """「同意する」 on the member info card after the shop published a new notice version. The
    button names the version it showed: an older card's tap does not accept a newer version."""
    if not ctx.customer.registered:
        await _invite(ctx)
        return
    notice = await consents.current_notice(ctx.session)
    shown = event.action.get("notice")
    if notice is None or ctx.customer.privacy_notice_id == notice.id:
        await ctx.reply_text("privacy_already_accepted")
        return
    if shown != str(notice.id):  # a card of an earlier version: show the current one
        await reply_member_info(ctx)
        return
    consents.accept_notice(ctx.session, ctx.customer, notice, channel=ConsentChannel.LINE_CHAT, at=ctx.now)
    await ctx.record("privacy.accepted", {"notice_id": notice.id, "version": notice.version})
    await ctx.reply_text("privacy_accepted")


async def show_member_info(ctx: FlowContext, event: Input) -> None:
    if not ctx.customer.registered:
        await _invite(ctx)
        return
    await reply_member_info(ctx)


async def set_marketing(ctx: FlowContext, event: Input) -> None:
    """「お知らせを受け取らない」/「お知らせを受け取る」 (postback value=off|on) or 「配信停止」 typed."""
    value = event.action.get("value") if event.kind == "postback" else "off"
    if value not in ("on", "off"):
        await show_member_info(ctx, event)
        return
    opt_in = value == "on"
    if opt_in and not ctx.customer.registered:
        await _invite(ctx)  # opting in is part of registering; opting out always works
        return
    if customers.set_marketing_opt_in(ctx.customer, opt_in, ctx.now):
        consents.record(ctx.session, ctx.customer.id, (ConsentPurpose.MARKETING,),
                        ConsentAction.GRANTED if opt_in else ConsentAction.WITHDRAWN,
                        channel=ConsentChannel.LINE_CHAT, at=ctx.now, notice_id=ctx.customer.privacy_notice_id)
        await ctx.record("marketing.opted_in" if opt_in else "marketing.opted_out", {"via": "member_info" if event.kind == "postback" else "keyword"})
    await ctx.reply_text("marketing_opted_in" if opt_in else "marketing_opted_out")


async def refuse_unless_registered(ctx: FlowContext) -> bool:
    if not ctx.customer.registered:
        await _invite(ctx)
        return False
    return True


async def ask_profile_field(ctx: FlowContext, data: dict) -> None:
    await _ask_which_field(ctx, PROFILE_FIELDS, "profile_edit_which", PROFILE_CHOOSE)


async def on_profile_field(ctx: FlowContext, event: Input, data: dict) -> Transition:
    field = await _field_chosen(ctx, event, PROFILE_FIELDS)
    return Goto(state_id(PROFILE, field)) if field is not None else Retry()


def _customer_value(ctx: FlowContext, field: Field, data: dict) -> Any:
    return getattr(ctx.customer, field.column)


async def save_profile_field(ctx: FlowContext, field: Field, value: Any, data: dict) -> Transition:
    if customers.update_profile(ctx.customer, field.column, value):
        await ctx.record("profile.updated", {"field": field.column})
        if value is not None and field.column in ("email", "phone"):
            await identities.link_profile(ctx.session, ctx.customer, source="registration", now=ctx.now)
    label = await ctx.text(field.label_key)
    await ctx.reply_text("profile_removed" if value is None else "profile_updated", label=label)
    await reply_member_info(ctx)
    return Done()


def registration_field_states() -> tuple[State, ...]:
    return tuple(field_state(REGISTRATION, field, after=remember, current=_current_answer) for field in FIELDS)


def profile_field_states() -> tuple[State, ...]:
    return tuple(field_state(PROFILE, field, after=save_profile_field, current=_customer_value) for field in PROFILE_FIELDS)
