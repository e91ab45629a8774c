"""The flow engine: every declared flow builds, bad declarations fail when built, and
what a flow keeps between events survives in storage (real database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kizuna.flows import all_commands, all_flows
from kizuna.flows.engine import (
    Command,
    Done,
    Flow,
    FlowContext,
    FlowDeclarationError,
    FlowEngine,
    Follow,
    Input,
    Keyword,
    Postback,
    State,
)
from kizuna.storage import flow_states
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Customer
from kizuna.storage.types import utcnow


async def _prompt(ctx, data):
    return None


async def _on_input(ctx, event, data):
    return Done()


async def _run(ctx, event):
    return None


def flow(name="demo", states=("demo.one",), entry_points=(Keyword("デモ"),), **kwargs) -> Flow:
    return Flow(name=name, entry_points=entry_points, states=tuple(State(s, _prompt, _on_input) for s in states), **kwargs)


def test_every_flow_and_command_builds():
    engine = FlowEngine(all_flows(), commands=all_commands())
    assert {"registration", "profile"} <= set(engine.flows)
    assert {"member_info", "marketing"} <= {command.name for command in engine.commands}
    registration = engine.flows["registration"]
    assert registration.first_state == "registration.consent"
    assert [state.id for state in registration.states] == [
        "registration.consent", "registration.name", "registration.birthday", "registration.gender",
        "registration.prefecture", "registration.phone", "registration.email", "registration.marketing",
        "registration.confirm", "registration.edit",
    ]


@pytest.mark.parametrize(
    "flows, commands, message",
    [
        ([flow(states=("other.one",))], [], "must be named demo.<step>"),
        ([flow(states=("demo.one", "demo.one"))], [], "declared twice"),
        ([flow(entry_points=())], [], "no entry points"),
        ([flow(states=())], [], "no states"),
        ([flow(transitions={"demo.one": ("demo.nowhere",)})], [], "unknown state 'demo.nowhere'"),
        ([flow(), flow(entry_points=(Keyword("別"),))], [], "flow names must be unique"),
        ([flow(), flow(name="copy", states=("copy.one",), entry_points=(Keyword("デモ"),))], [], "both start on keyword"),
        ([flow(entry_points=(Postback("register"),))], [Command("dup", (Postback("register"),), _run)], "both start on postback"),
        ([flow(entry_points=(Follow(),)), flow(name="b", states=("b.one",), entry_points=(Follow(),))], [], "both start on follow"),
        ([flow()], [Command("empty", (), _run)], "no entry points"),
        ([Flow("demo", (Keyword("デモ"),), (State("demo.one", _prompt, _on_input, accepts=("demo.gone",)),))], [],
         "accepts buttons of unknown state 'demo.gone'"),
        ([Flow("demo", (Keyword("デモ"),), (State("demo.one", _prompt, _on_input),), stale_texts=("no_such_text",))], [],
         "stale_texts names unknown bot text 'no_such_text'"),
    ],
)
def test_bad_declarations_raise_when_built(flows, commands, message):
    with pytest.raises(FlowDeclarationError, match=message):
        FlowEngine(flows, commands=commands)


def test_buttons_name_the_state_they_answer():
    from kizuna.flows.engine import step_data

    tapped = Input("postback", data=step_data("registration.confirm", "ok"))
    assert tapped.action == {"action": "step", "state": "registration.confirm", "value": "ok"}
    assert (tapped.state, tapped.value) == ("registration.confirm", "ok")
    assert Input("text", text="登録する").state is None and Input("postback", data="action=coupons").state is None


def test_our_flows_collide_with_nothing_we_add_by_mistake():
    with pytest.raises(FlowDeclarationError, match="both start on keyword '会員登録'"):
        FlowEngine([*all_flows(), flow(entry_points=(Keyword("会員登録"),))], commands=all_commands())


# -- against a real database ----------------------------------------------------------------


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def _customer(sessions) -> int:
    async with transaction(sessions) as session:
        customer = Customer(line_user_id="U" + "a" * 32, language="ja")
        session.add(customer)
        await session.flush()
        return customer.id


async def _event(sessions, engine: FlowEngine, customer_id: int, event: Input) -> list[dict]:
    """One event in its own transaction, as the processor runs it."""
    async with transaction(sessions) as session:
        customer = await session.get(Customer, customer_id)
        ctx = FlowContext(session=session, customer=customer, now=utcnow(), replies=[])
        await engine.handle(ctx, event)
        return ctx.replies


async def test_nested_flow_data_is_kept_between_events(sessions):
    engine = FlowEngine(all_flows(), commands=all_commands())
    customer_id = await _customer(sessions)
    for text in ("会員登録", "同意する", "山田 花子", "1990/01/31"):
        await _event(sessions, engine, customer_id, Input("text", text=text))
    async with sessions() as session:
        row = await flow_states.get(session, customer_id)
    assert row.state == "registration.gender"
    assert row.data["values"] == {"full_name": "山田 花子", "birthday": "1990-01-31"}
    assert row.expires_at > utcnow() + timedelta(minutes=29)


async def test_a_question_mid_flow_is_answered_then_asked_again(sessions):
    asked = []

    async def faq(ctx, text):
        asked.append(text)
        return [{"type": "text", "text": "駐車場は店舗裏に5台ございます。"}] if "駐車場" in text else None

    engine = FlowEngine(all_flows(), commands=all_commands(), side_answerer=faq)
    customer_id = await _customer(sessions)
    await _event(sessions, engine, customer_id, Input("text", text="会員登録"))
    await _event(sessions, engine, customer_id, Input("text", text="同意する"))

    # All letters, so it would parse as a name; it reads as a question, so the FAQ gets it.
    for question in ("駐車場はありますか", "駐車場はありますか?"):
        answer, again = await _event(sessions, engine, customer_id, Input("text", text=question))
        assert answer["text"] == "駐車場は店舗裏に5台ございます。"
        assert again["text"].startswith("お名前を教えてください")
    # A question the FAQ cannot answer gets the field's own hint.
    hint, again = await _event(sessions, engine, customer_id, Input("text", text="営業時間は何時までですか"))
    assert hint["text"] == "お名前を「山田 花子」のように入力してください。"
    assert asked == ["駐車場はありますか", "駐車場はありますか?", "営業時間は何時までですか"]
    async with sessions() as session:
        row = await flow_states.get(session, customer_id)
    assert row.state == "registration.name" and "values" not in row.data
