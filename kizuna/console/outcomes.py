"""What a staff action's outcome is called in the console: the services' typed errors
(storage/errors.py) as keys of a fixed list, shown by the page the action redirects to
(`?error=<key>`, `?notice=<key>`: never text from the request)."""

from __future__ import annotations

from kizuna.storage.errors import Conflict, Invalid, NotFound, ServiceError

NOTICES = (
    "taken", "assigned", "replied", "noted", "coupon_sent", "coupon_resent", "faq_sent", "resolved", "labels_saved",
    "tag_added", "tag_removed", "unchanged", "canned_created", "canned_updated", "canned_deleted",
)
ERRORS = (
    "already_taken", "resolved", "blocked", "text_invalid", "assignee_invalid", "labels_invalid", "tag_invalid",
    "coupon_inactive", "coupon_out_of_stock", "coupon_not_yet_valid", "coupon_ended", "coupon_used", "not_found",
    "shortcut_invalid", "shortcut_taken", "title_invalid", "too_many",
)
_CONFLICTS = {
    "already_taken": "already_taken", "resolved": "resolved", "blocked": "blocked", "shortcut_taken": "shortcut_taken",
    "too_many": "too_many", "inactive": "coupon_inactive", "out_of_stock": "coupon_out_of_stock",
    "not_yet_valid": "coupon_not_yet_valid", "ended": "coupon_ended", "already_redeemed": "coupon_used",
    "already_revoked": "coupon_used", "already_expired": "coupon_used",
}
_FIELDS = {
    "text": "text_invalid", "assignee_id": "assignee_invalid", "labels": "labels_invalid", "priority": "labels_invalid",
    "tag": "tag_invalid", "shortcut": "shortcut_invalid", "title": "title_invalid",
}


def error_key(error: ServiceError) -> str:
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, Invalid):
        return _FIELDS.get(error.field, "text_invalid")
    if isinstance(error, Conflict):
        return _CONFLICTS.get(error.code, "not_found")
    return "not_found"


def shown(query) -> tuple[str | None, str | None]:
    """The i18n keys of the notice and the error a page was redirected with, if known."""
    notice, error = query.get("notice"), query.get("error")
    return (f"outcome.{notice}" if notice in NOTICES else None, f"outcome.error.{error}" if error in ERRORS else None)
