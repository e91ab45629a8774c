"""Support conversations (issue 13): the same SupportDesk the console uses, for a system that
answers customers (a helpdesk) or reads what support staff did. Admins and support only:
marketers never read support conversations."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kizuna.storage import conversations
from kizuna.storage import staff as staff_store
from kizuna.storage.audit import Actor
from kizuna.storage.errors import Invalid, NotFound
from kizuna.storage.models import Conversation, ConversationNote, ConversationStatus, Interaction, Staff
from kizuna.storage.roles import Role
from kizuna.storage.texts import MAX_TEXT

from .http import TOKEN, Endpoint, choice_query, id_param, json_answer, parse_body, path_id, services, text_param

SUPPORT = (Role.ADMIN, Role.SUPPORT)


class Assignee(BaseModel):
    id: int
    email: str
    display_name: str


class ConversationRead(BaseModel):
    id: int
    customer_id: int
    status: ConversationStatus
    assignee: Assignee | None
    priority: str
    labels: list[str]
    reason: str
    created_at: datetime
    waiting_since: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    csat_score: int | None


class MessageRead(BaseModel):
    id: int
    kind: str  # message.text, message.sticker, ..., conversation.bot_handoff ..., or "note"
    direction: str  # in | out | sys | note
    private: bool  # a staff note: never sent to the customer
    text: str | None
    sender_type: str
    sender_id: str | None
    created_at: datetime


class ConversationDetail(ConversationRead):
    messages: list[MessageRead]


class ConversationList(BaseModel):
    items: list[ConversationRead]


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    staff_email: str = Field(min_length=1, max_length=254, description="the staff member's login")


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ask_csat: bool = Field(default=True, description="send the customer a one-tap 1-5 rating question")


def _actor(request: web.Request) -> Actor:
    return Actor(f"token:{request[TOKEN].name}")


def _read(conversation: Conversation, assignee: Staff | None) -> dict:
    return {
        **conversation.model_dump(exclude={"assignee_id"}),
        "assignee": Assignee(id=assignee.id, email=assignee.email, display_name=assignee.display_name) if assignee else None,
    }


def _message(item: Interaction | ConversationNote) -> MessageRead:
    if isinstance(item, ConversationNote):
        return MessageRead(id=item.id, kind="note", direction="note", private=True, text=item.text, sender_type="staff",
                           sender_id=item.author, created_at=item.created_at)
    return MessageRead(id=item.id, kind=item.kind, direction=item.direction, private=False, text=item.text,
                       sender_type=item.sender_type, sender_id=item.sender_id, created_at=item.created_at)


async def _assignees(session, rows: list[Conversation]) -> dict[int, Staff]:
    ids = {row.assignee_id for row in rows if row.assignee_id is not None}
    return {member.id: member for member in [await staff_store.get(session, staff_id) for staff_id in ids] if member}


async def _detail(request: web.Request, conversation_id: int) -> ConversationDetail:
    async with services(request).sessions() as session:
        conversation = await conversations.get(session, conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        assignees = await _assignees(session, [conversation])
        shown = await conversations.messages(session, conversation)
    return ConversationDetail(**_read(conversation, assignees.get(conversation.assignee_id)), messages=[_message(item) for item in shown])


async def list_conversations(request: web.Request) -> web.Response:
    status = choice_query(request, "status")
    async with services(request).sessions() as session:
        rows = await conversations.list_page(session, status=ConversationStatus(status) if status else None, limit=200)
        assignees = await _assignees(session, rows)
    return json_answer(ConversationList(items=[ConversationRead(**_read(row, assignees.get(row.assignee_id))) for row in rows]))


async def get_conversation(request: web.Request) -> web.Response:
    return json_answer(await _detail(request, path_id(request)))


async def assign(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    body = await parse_body(request, AssignRequest)
    try:
        email = staff_store.normalize_email(body.staff_email)
    except Invalid:
        email = None  # not an address: no staff member's login
    async with services(request).sessions() as session:
        member = await staff_store.get_by_email(session, email) if email else None
    if member is None or member.disabled_at is not None or member.role not in SUPPORT:
        raise NotFound("no active admin or support staff member has this e-mail address")
    await services(request).support.assign(conversation_id, member.id)
    return json_answer(await _detail(request, conversation_id))


async def send_message(request: web.Request) -> web.Response:
    body = await parse_body(request, TextRequest)
    interaction = await services(request).support.reply(path_id(request), _actor(request), body.text)
    return json_answer(_message(interaction), status=201)


async def add_note(request: web.Request) -> web.Response:
    body = await parse_body(request, TextRequest)
    note = await services(request).support.note(path_id(request), _actor(request), body.text)
    return json_answer(_message(note), status=201)


async def resolve(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    body = await parse_body(request, ResolveRequest) if request.can_read_body else ResolveRequest()
    await services(request).support.resolve(conversation_id, _actor(request), ask_csat=body.ask_csat)
    return json_answer(await _detail(request, conversation_id))


_ID = [id_param(Conversation.id)]
ENDPOINTS = [
    Endpoint("GET", "/conversations", list_conversations,
             "Support conversations: pending and open ones longest waiting first, resolved ones newest first",
             roles=SUPPORT, response=ConversationList,
             query=[text_param("status", enum=[status.value for status in ConversationStatus])]),
    Endpoint("GET", "/conversations/{id}", get_conversation,
             "One conversation with its messages both ways since it began, and staff's private notes",
             roles=SUPPORT, response=ConversationDetail, path_params=_ID),
    Endpoint("POST", "/conversations/{id}/assign", assign, "Give the conversation to an admin or support staff member",
             roles=SUPPORT, request=AssignRequest, response=ConversationDetail, path_params=_ID,
             errors={409: "resolved: the conversation is resolved"}),
    Endpoint("POST", "/conversations/{id}/messages", send_message,
             "Send a text to the customer as the shop (a push with a retry key, through the outbox)",
             roles=SUPPORT, request=TextRequest, response=MessageRead, path_params=_ID, statuses=(201,),
             errors={409: "resolved: the conversation is resolved; blocked: the customer blocked the account"}),
    Endpoint("POST", "/conversations/{id}/notes", add_note, "Add a private note (never sent to the customer)",
             roles=SUPPORT, request=TextRequest, response=MessageRead, path_params=_ID, statuses=(201,)),
    Endpoint("POST", "/conversations/{id}/resolve", resolve,
             "Hand the customer back to the bot (optionally asking for a 1-5 rating)",
             roles=SUPPORT, request=ResolveRequest, response=ConversationDetail, path_params=_ID,
             errors={409: "resolved: the conversation is resolved already"}),
]
