"""Sends deliveries (the outbox) to LINE and records the outcome.

A delivery is claimed with one conditional UPDATE before any request, so two
senders never both send it; its retry key was fixed when it was created, so a push
retried after a crash or a 5xx is executed by LINE once. Effects (a rich menu link)
are idempotent at LINE, so applying one again after a crash is harmless; marking a chat
read is best effort (one attempt: a refusal or an outage is recorded, never retried).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import customers, deliveries
from kizuna.storage.db import transaction
from kizuna.storage.models import DeliveryKind, DeliveryStatus
from kizuna.storage.types import utcnow

from . import richmenu
from .line import LineClient, LineError, LineUnavailable

log = logging.getLogger("kizuna.sender")

# LINE forgets a retry key after 24 h; past this age a retry could send twice, so
# the delivery is marked undetermined instead (LINE_FACTS.md).
RETRY_KEY_SAFE_AGE = timedelta(hours=23)


class DeliverySender:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], line: LineClient, claim_timeout: timedelta = deliveries.CLAIM_TIMEOUT
    ) -> None:
        self.sessions = sessions
        self.line = line
        self.claim_timeout = claim_timeout

    async def send(self, delivery_id: int) -> DeliveryStatus | None:
        """Send one delivery; returns its new status (None if someone else has it)."""
        async with transaction(self.sessions) as session:
            delivery = await deliveries.claim(session, delivery_id, claim_timeout=self.claim_timeout)
            if delivery is None:
                return None
            customer = await customers.get(session, delivery.customer_id)
        assert customer is not None
        if customer.line_user_id is None:
            # Known only from the shop's orders or records: there is nobody on LINE to send to.
            return await self._finish(delivery_id, DeliveryStatus.FAILED, None, error="the customer is not on LINE")
        if delivery.kind == DeliveryKind.RICH_MENU:
            return await self._apply_rich_menu(delivery, customer.line_user_id)
        if delivery.kind == DeliveryKind.MARK_READ:
            return await self._mark_read(delivery)

        if utcnow() - delivery.created_at > RETRY_KEY_SAFE_AGE:
            return await self._finish(delivery_id, DeliveryStatus.UNDETERMINED, None, error="retry key older than 23 h")
        reply_usable = delivery.reply_token is not None and delivery.reply_deadline is not None and utcnow() < delivery.reply_deadline
        if customer.blocked and not reply_usable:
            return await self._finish(delivery_id, DeliveryStatus.FAILED, None, error="the customer has blocked the account")
        try:
            result = await self.line.send(
                customer.line_user_id,
                delivery.messages,
                retry_key=delivery.retry_key,
                reply_token=delivery.reply_token if reply_usable else None,
                # attempts counts this claim: more than one means an earlier try may have used the token
                reply_tried_before=delivery.attempts > 1,
                before_push=lambda: self._forget_reply_token(delivery_id),
            )
        except LineUnavailable as error:
            log.warning("delivery %s not sent yet (%s); will retry with the same key", delivery_id, error)
            async with transaction(self.sessions) as session:
                await deliveries.release(session, delivery_id, str(error))
            return DeliveryStatus.PENDING
        except LineError as error:
            log.error("delivery %s refused by LINE: %s %s", delivery_id, error, error.details)
            return await self._finish(delivery_id, DeliveryStatus.FAILED, None, error=f"{error} {error.details or ''}".strip(), request_id=error.request_id)
        if result.status == DeliveryStatus.UNDETERMINED:
            log.warning("delivery %s undetermined: %s", delivery_id, result.note)
        return await self._finish(delivery_id, result.status, result.method, error=result.note, request_id=result.request_id)

    async def _apply_rich_menu(self, delivery, line_user_id: str) -> DeliveryStatus:
        menu = (delivery.effect or {}).get("menu")
        try:
            outcome = await richmenu.switch_user_menu(self.line, line_user_id, menu)
        except LineUnavailable as error:
            log.warning("rich menu for delivery %s not switched yet (%s); will retry", delivery.id, error)
            async with transaction(self.sessions) as session:
                await deliveries.release(session, delivery.id, str(error))
            return DeliveryStatus.PENDING
        except LineError as error:
            log.warning("rich menu for delivery %s refused by LINE: %s", delivery.id, error)
            return await self._finish(delivery.id, DeliveryStatus.FAILED, None, error=str(error), request_id=error.request_id)
        if outcome == "unknown menu":
            return await self._finish(delivery.id, DeliveryStatus.FAILED, None, error=f"no such menu: {menu!r}")
        return await self._finish(delivery.id, DeliveryStatus.SENT, "rich_menu", error=None if outcome in ("linked", "unlinked") else outcome)

    async def _mark_read(self, delivery) -> DeliveryStatus:
        try:
            await self.line.mark_as_read((delivery.effect or {}).get("token", ""))
        except LineError as error:  # LineUnavailable too: the next message read marks it anyway
            log.info("chat not marked read (delivery %s): %s", delivery.id, error)
            return await self._finish(delivery.id, DeliveryStatus.FAILED, None, error=str(error), request_id=error.request_id)
        return await self._finish(delivery.id, DeliveryStatus.SENT, "mark_read")

    async def _forget_reply_token(self, delivery_id: int) -> None:
        async with transaction(self.sessions) as session:
            await deliveries.forget_reply_token(session, delivery_id)

    async def _finish(
        self, delivery_id: int, status: DeliveryStatus, method: str | None, *, error: str | None = None, request_id: str | None = None
    ) -> DeliveryStatus:
        async with transaction(self.sessions) as session:
            await deliveries.finish(session, delivery_id, status=status, method=method, line_request_id=request_id, error=error)
        return status
