"""Withdrawal (退会): a member leaves, in the chat, declared with the engine.

```mermaid
stateDiagram-v2
    [*] --> confirm: 退会 / 退会する / 会員をやめる, action=withdraw (member info card)
    [*] --> [*]: not a member (a short answer, nothing changes)
    confirm --> [*]: 退会する (button) or はい / 退会する typed: withdrawn
    confirm --> [*]: やめる / 退会しない: nothing changes
```

The confirmation says what withdrawing means before anything happens: the coupons the
customer holds stop working, marketing messages stop, the registration data is deleted now or
kept until the shop's retention purge (the shop's `withdrawal_data` setting), and a sign-up
coupon is not given twice. 「退会する」 typed at the confirmation is a yes (the state takes its
flow's own entry words), so a customer who types it twice is not asked forever.

Withdrawing (`withdraw`), in the event's transaction: not a member any more, marketing off at
once (campaign snapshots and sends leave out opted-out customers), every ledger purpose
withdrawn under the notice version they had accepted, unused coupon grants revoked (the coupons
service: timeline rows), active sequence enrolments exited ("withdrawn"), the registration data
and the identities it gave cleared (or kept), a `withdrawn` timeline row; after the commit the
member rich menu is unlinked (the outbox's rich_menu effect, "default"), so LINE shows the
channel's default menu with 会員登録 again.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from kizuna.flows.engine import Done, Flow, FlowContext, Input, Keyword, Postback, Retry, State, Transition, step_data
from kizuna.storage import consents, coupons, identities, sequences
from kizuna.storage.models import ConsentAction, ConsentChannel, ConsentPurpose, CouponGrant, GrantStatus, WithdrawalData

from . import bot_texts as _texts  # noqa: F401  (registers the default texts)
from .fields import comparable, postback_item

WITHDRAWAL = "withdrawal"
CONFIRM = "withdrawal.confirm"
REVOKED_BY = "withdrawal"  # who revoked the grants, on their timeline rows


async def _usable_grants(ctx: FlowContext) -> list[CouponGrant]:
    statement = sa.select(CouponGrant).where(
        CouponGrant.customer_id == ctx.customer.id, CouponGrant.status == GrantStatus.ISSUED, CouponGrant.expires_at > ctx.now,
    )
    return list((await ctx.session.execute(statement)).scalars())


async def refuse_unless_member(ctx: FlowContext) -> bool:
    if not ctx.customer.registered:
        await ctx.reply_text("withdrawal_not_member")
        return False
    return True


async def ask_confirm(ctx: FlowContext, data: dict) -> None:
    held = len(await _usable_grants(ctx))
    coupons_line = await ctx.text("withdrawal_coupons_some", count=held) if held else await ctx.text("withdrawal_coupons_none")
    keep = await consents.withdrawal_data(ctx.session) == WithdrawalData.KEEP
    data_line = await ctx.text("withdrawal_data_keep" if keep else "withdrawal_data_delete")
    gift_line = await ctx.text("withdrawal_no_second_gift") if await coupons.registration_coupon(ctx.session) else ""
    yes, no = await ctx.text("withdrawal_confirm_yes"), await ctx.text("withdrawal_confirm_no")
    await ctx.reply_text(
        "withdrawal_explain", coupons=coupons_line, data=data_line, gift=gift_line,
        quick_reply=[postback_item(yes, step_data(CONFIRM, "yes"), yes), postback_item(no, step_data(CONFIRM, "no"), no)],
    )


_YES = ("はい", "退会する", "退会します", "退会", "yes", "withdraw")
_NO = ("いいえ", "退会しない", "退会しません", "やめておく", "no")


async def _answer(ctx: FlowContext, event: Input) -> str | None:
    if event.kind == "postback":
        return event.value if event.value in ("yes", "no") else None
    if event.kind != "text" or not event.text:
        return None
    said = comparable(event.text)
    if said in {comparable(word) for word in (*_YES, await ctx.text("withdrawal_confirm_yes"))}:
        return "yes"
    if said in {comparable(word) for word in (*_NO, await ctx.text("withdrawal_confirm_no"))}:
        return "no"
    return None


async def on_confirm(ctx: FlowContext, event: Input, data: dict) -> Transition:
    answer = await _answer(ctx, event)
    if answer == "yes":
        await withdraw(ctx)
        return Done()
    if answer == "no":
        await ctx.record("flow.cancelled", {"flow": WITHDRAWAL, "state": CONFIRM})
        await ctx.reply_text("withdrawal_kept")
        return Done()
    return Retry(await ctx.text("withdrawal_confirm_invalid") if event.kind == "text" else None)


async def withdraw(ctx: FlowContext) -> None:
    """Everything a withdrawal does (see the module docstring), in the event's transaction."""
    customer, session, now = ctx.customer, ctx.session, ctx.now
    if not customer.registered:  # withdrawn meanwhile (another device)
        await ctx.reply_text("withdrawal_not_member")
        return
    was_opted_in = customer.marketing_opt_in
    notice_id = customer.privacy_notice_id
    if notice_id is None:
        current = await consents.current_notice(session)
        notice_id = current.id if current is not None else None
    revoked = 0
    for grant in await _unused_grants(ctx):
        await coupons.revoke(session, grant_id=grant.id, by=REVOKED_BY, now=now)
        revoked += 1
    exited = await sequences.on_withdrawn(session, customer.id, now=now)
    delete = await consents.withdrawal_data(session) == WithdrawalData.DELETE
    refs = identities.profile_refs(customer)
    cleared = consents.end_membership(customer, delete_data=delete, at=now)
    if delete:
        await consents.forget_identities(session, customer.id, refs)
    consents.record(session, customer.id, tuple(ConsentPurpose), ConsentAction.WITHDRAWN,
                    channel=ConsentChannel.LINE_CHAT, at=now, notice_id=notice_id)
    if was_opted_in:
        await ctx.record("marketing.opted_out", {"via": "withdrawal"})
    await ctx.record("withdrawn", {"data": "deleted" if delete else "kept", "cleared": cleared,
                                   "coupons_revoked": revoked, "sequences_exited": exited})
    await ctx.reply_text("withdrawal_done")
    ctx.after_commit({"type": "rich_menu", "menu": "default"})
    ctx.publish({"type": "customer", "customer_id": customer.id})


async def _unused_grants(ctx: FlowContext) -> list[CouponGrant]:
    """Every grant not redeemed nor revoked, expired ones too (they stop existing for the customer)."""
    statement = sa.select(CouponGrant).where(CouponGrant.customer_id == ctx.customer.id, CouponGrant.status == GrantStatus.ISSUED)
    return list((await ctx.session.execute(statement.order_by(CouponGrant.id))).scalars())


async def withdrawal_stale(ctx: FlowContext) -> None:
    """The 退会する button of an ended confirmation (already withdrawn, or cancelled)."""
    await ctx.reply_text("withdrawal_stale_member" if ctx.customer.registered else "withdrawal_stale_done")


withdrawal = Flow(
    name=WITHDRAWAL,
    entry_points=(Postback("withdraw"), Keyword("退会", "退会する", "退会します", "退会したい", "退会希望", "会員をやめる",
                                                "会員をやめたい", "withdraw membership")),
    on_start=refuse_unless_member,
    states=(State(CONFIRM, prompt=ask_confirm, on_input=on_confirm, takes_entry_words=True),),
    timeout=timedelta(minutes=30),
    on_stale=withdrawal_stale,
)
