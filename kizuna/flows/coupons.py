"""Showing coupons on LINE: a Flex bubble per coupon, and the "クーポン" command that
replies the customer's valid coupons (rich menu: postback `action=coupons`).

The bubble is what the customer shows at the till: the QR code (served by
`GET /coupons/{code}/qr.png`), the discount, the last valid day in shop time, and the
code in large type for a clerk to type when there is no scanner.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from kizuna.storage import coupons, texts
from kizuna.storage.models import Coupon, CouponGrant, DiscountType

from .engine import Command, FlowContext, Input, Keyword, Postback

MAX_BUBBLES = 10  # LINE allows 12 in a carousel; 10 keeps it well under 50 KB
ALT_TEXT_MAX = 400

texts.register({
    "coupon_discount_amount": {"ja": "{value}円OFF", "en": "¥{value} off"},
    "coupon_discount_percent": {"ja": "{value}%OFF", "en": "{value}% off"},
    "coupon_valid_until": {"ja": "{date}まで有効", "en": "Valid until {date}"},
    "coupon_code_label": {"ja": "クーポンコード", "en": "Coupon code"},
    "coupon_clerk_note": {
        "ja": "お会計の前にこの画面をスタッフにお見せください。\n【スタッフの方へ】QRコードを読み取るか、上のコードを入力してください。",
        "en": "Please show this screen to our staff before you pay.\nStaff: scan the QR code or enter the code above.",
    },
    "coupons_alt_text": {"ja": "クーポン：{items}", "en": "Coupons: {items}"},
    "coupons_none": {
        "ja": "現在お使いいただけるクーポンはありません。新しいクーポンはこのトークでお知らせします。",
        "en": "You have no coupons to use right now. We'll tell you here when there's a new one.",
    },
    "coupons_none_register": {
        "ja": "現在お使いいただけるクーポンはありません。\n会員登録いただくと、お得なクーポンやお知らせをお届けします。",
        "en": "You have no coupons to use right now.\nRegister as a member to receive coupons and news.",
    },
    "coupons_none_register_gift": {
        "ja": "現在お使いいただけるクーポンはありません。\nいま会員登録いただくと、会員登録特典クーポン「{title}」をお送りします！",
        "en": "You have no coupons to use right now.\nRegister as a member now and get a \"{title}\" coupon!",
    },
    "coupons_register_button": {"ja": "会員登録する", "en": "Register"},
})

WORDS = ("coupon_discount_amount", "coupon_discount_percent", "coupon_valid_until", "coupon_code_label",
         "coupon_clerk_note", "coupons_alt_text")


async def load_words(session: Any, locale: str) -> dict[str, str]:
    """The texts a bubble uses, with the operator's edits."""
    return {key: await texts.get_text(session, key, locale) for key in WORDS}


def _default_words(locale: str) -> dict[str, str]:
    return {key: texts.DEFAULTS[key].get(locale) or texts.DEFAULTS[key]["ja"] for key in WORDS}


def qr_url(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}/coupons/{code}/qr.png"


def discount_text(coupon: Coupon, words: dict[str, str]) -> str:
    key = "coupon_discount_percent" if coupon.discount_type == DiscountType.PERCENT else "coupon_discount_amount"
    value = f"{coupon.discount_value:,}" if coupon.discount_type == DiscountType.AMOUNT else str(coupon.discount_value)
    return words[key].format(value=value)


def until_text(expires_at: datetime, tz: tzinfo, locale: str) -> str:
    """The last valid moment in shop time: a date when the grant runs to the end of a day
    (the usual case), with the time otherwise."""
    last = (expires_at - timedelta(seconds=1)).astimezone(tz)
    whole_day = (last.hour, last.minute) == (23, 59)
    if locale == "en":
        text = f"{last:%b} {last.day}, {last.year}"
    else:
        text = f"{last.year}年{last.month}月{last.day}日"
    return text if whole_day else f"{text} {expires_at.astimezone(tz):%H:%M}"


def _summary(grant: CouponGrant, coupon: Coupon, words: dict[str, str], tz: tzinfo, locale: str) -> str:
    return f"{coupon.title} {discount_text(coupon, words)} ({words['coupon_valid_until'].format(date=until_text(grant.expires_at, tz, locale))})"


def _alt_text(items: list[str], words: dict[str, str]) -> str:
    text = words["coupons_alt_text"].format(items=" / ".join(items))
    return text if len(text) <= ALT_TEXT_MAX else text[: ALT_TEXT_MAX - 1] + "…"


def coupon_bubble(grant: CouponGrant, coupon: Coupon, *, public_url: str, locale: str,
                  words: dict[str, str] | None = None, tz: tzinfo | None = None) -> dict:
    words = words or _default_words(locale)
    tz = tz or coupons.zone("Asia/Tokyo")
    body: list[dict] = []
    if coupon.image_url:
        body.append({"type": "image", "url": coupon.image_url, "size": "full", "aspectRatio": "20:13", "aspectMode": "cover"})
    body += [
        {"type": "text", "text": coupon.title, "weight": "bold", "size": "lg", "wrap": True},
        {"type": "text", "text": discount_text(coupon, words), "weight": "bold", "size": "xxl", "color": "#D7263D"},
    ]
    if coupon.description:
        body.append({"type": "text", "text": coupon.description, "size": "sm", "color": "#555555", "wrap": True})
    body += [
        {"type": "text", "text": words["coupon_valid_until"].format(date=until_text(grant.expires_at, tz, locale)),
         "size": "sm", "color": "#333333", "weight": "bold"},
        {"type": "separator", "margin": "md"},
        {"type": "text", "text": words["coupon_code_label"], "size": "xs", "color": "#888888", "align": "center", "margin": "md"},
        {"type": "text", "text": grant.code, "size": "xl", "weight": "bold", "align": "center", "color": "#111111"},
        {"type": "text", "text": words["coupon_clerk_note"], "size": "xxs", "color": "#888888", "wrap": True, "margin": "md"},
    ]
    return {
        "type": "bubble",
        "hero": {"type": "image", "url": qr_url(public_url, grant.code), "size": "full", "aspectRatio": "1:1",
                 "aspectMode": "fit", "backgroundColor": "#FFFFFF"},
        "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": body},
    }


def coupon_flex(grant: CouponGrant, coupon: Coupon, *, public_url: str, locale: str,
                words: dict[str, str] | None = None, tz: tzinfo | None = None) -> dict:
    """A Flex message of one coupon (e.g. pushed right after it is issued)."""
    words = words or _default_words(locale)
    tz = tz or coupons.zone("Asia/Tokyo")
    return {
        "type": "flex",
        "altText": _alt_text([_summary(grant, coupon, words, tz, locale)], words),
        "contents": coupon_bubble(grant, coupon, public_url=public_url, locale=locale, words=words, tz=tz),
    }


def coupons_carousel(items: list[tuple[CouponGrant, Coupon]], *, public_url: str, locale: str,
                     words: dict[str, str] | None = None, tz: tzinfo | None = None) -> dict:
    """A Flex carousel of up to MAX_BUBBLES coupons, in the order given."""
    words = words or _default_words(locale)
    tz = tz or coupons.zone("Asia/Tokyo")
    items = items[:MAX_BUBBLES]
    return {
        "type": "flex",
        "altText": _alt_text([_summary(g, c, words, tz, locale) for g, c in items], words),
        "contents": {"type": "carousel", "contents": [
            coupon_bubble(g, c, public_url=public_url, locale=locale, words=words, tz=tz) for g, c in items
        ]},
    }


async def show_coupons(ctx: FlowContext, event: Input) -> None:
    """The customer's valid coupons, newest first; or why there are none."""
    rows = await coupons.grants_of_customer(ctx.session, ctx.customer.id, valid_only=True, now=ctx.now, limit=MAX_BUBBLES)
    if rows:
        shop = await coupons.get_shop(ctx.session)
        public_url = ctx.services.public_url if ctx.services is not None else ""
        ctx.reply(coupons_carousel(rows, public_url=public_url, locale=ctx.locale,
                                   words=await load_words(ctx.session, ctx.locale), tz=coupons.zone(shop.timezone)))
        return
    if ctx.customer.registered:
        await ctx.reply_text("coupons_none")
        return
    label = (await ctx.text("coupons_register_button"))[:20]
    register = [{"type": "action", "action": {"type": "postback", "label": label, "data": "action=register", "displayText": label}}]
    gift = await coupons.registration_coupon(ctx.session)
    if gift is not None:
        await ctx.reply_text("coupons_none_register_gift", quick_reply=register, title=gift.title)
    else:
        await ctx.reply_text("coupons_none_register", quick_reply=register)


command = Command(
    name="coupons",
    entry_points=(Keyword("クーポン", "coupon", "coupons"), Postback("coupons")),
    run=show_coupons,
)
