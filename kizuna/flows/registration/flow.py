"""Member registration, member info and marketing consent, declared.

```mermaid
stateDiagram-v2
    [*] --> consent: 会員登録 (rich menu, button, keyword)
    consent --> [*]: 同意しない (nothing stored)
    consent --> name: 同意する
    name --> birthday
    birthday --> gender
    gender --> prefecture
    prefecture --> phone
    phone --> email: answer or スキップ
    email --> marketing: answer or スキップ
    marketing --> confirm
    confirm --> edit: 修正する
    edit --> confirm: 戻る
    edit --> name: field chosen (editing)
    name --> confirm: when editing (every field does this)
    confirm --> [*]: 登録する (customer, coupon, rich menu)
```

Every state: a wrong answer is explained and asked again; a question is answered by
the FAQ, then asked again; stickers and images ask again; やめる (cancel), 担当者
(talk to a person) and the timeout are the engine's and work everywhere (the consent
question and the list of details to change say that やめる cancels). Already
registered customers are told so instead of starting again. Every button is a postback
naming its state (engine.step_data), so a tap on an old card -- the summary's 登録する
after registering -- gets a short answer (`registration_stale`), never an FAQ list.

Member info (会員情報) is a command: the registered details with 「登録内容を変更する」
(the `profile` flow: pick a field, answer the same question as in registration, saved
at once) and 「お知らせを受け取らない」/「お知らせを受け取る」 (`action=marketing&value=off|on`),
「退会する」 (`action=withdraw`: the withdrawal flow, withdrawal.py) and, when the shop has
published a privacy notice version newer than the one the member accepted, 「プライバシー
ポリシーが更新されました」 with 「同意する」 (`action=privacy_accept&notice=<id>`).
The per-field states of both flows come from one table, `fields.FIELDS`.
docs/flows/registration.md has the states in a table.
"""

from __future__ import annotations

from datetime import timedelta

from kizuna.flows.engine import Command, Flow, Keyword, Postback, State

from .fields import FIELDS, PROFILE_FIELDS
from .steps import (
    CONFIRM,
    CONSENT,
    EDIT,
    PROFILE_CHOOSE,
    accept_privacy_notice,
    ask_consent,
    ask_field_to_edit,
    ask_profile_field,
    on_confirm,
    on_consent,
    on_field_to_edit,
    on_profile_field,
    profile_field_states,
    profile_stale,
    refuse_if_registered,
    registration_stale,
    refuse_unless_registered,
    registration_field_states,
    set_marketing,
    show_confirm,
    show_member_info,
    state_id,
)
from .withdrawal import withdrawal

registration = Flow(
    name="registration",
    entry_points=(Postback("register"), Keyword("会員登録", "登録", "register")),
    on_start=refuse_if_registered,
    states=(
        State(CONSENT, prompt=ask_consent, on_input=on_consent),
        # registration.name, .birthday, .gender, .prefecture, .phone, .email, .marketing
        *registration_field_states(),
        # The confirm card still takes a field tapped on the list of fields to change.
        State(CONFIRM, prompt=show_confirm, on_input=on_confirm, accepts=(EDIT,)),
        State(EDIT, prompt=ask_field_to_edit, on_input=on_field_to_edit),
    ),
    transitions={
        CONSENT: (state_id("registration", FIELDS[0]),),
        **{
            state_id("registration", field): (state_id("registration", later), CONFIRM)
            for field, later in zip(FIELDS, FIELDS[1:])
        },
        state_id("registration", FIELDS[-1]): (CONFIRM,),
        CONFIRM: (EDIT, CONSENT, *(state_id("registration", field) for field in FIELDS)),
        EDIT: (CONFIRM, *(state_id("registration", field) for field in FIELDS)),
    },
    timeout=timedelta(minutes=30),
    on_stale=registration_stale,
    # The consent and summary buttons of earlier releases sent their labels as text.
    stale_texts=("registration_confirm_ok", "registration_confirm_edit", "registration_consent_yes", "registration_consent_no"),
)

profile = Flow(
    name="profile",
    entry_points=(Postback("profile_edit"),),
    on_start=refuse_unless_registered,
    states=(
        State(PROFILE_CHOOSE, prompt=ask_profile_field, on_input=on_profile_field),
        # profile.name, .birthday, .gender, .prefecture, .phone, .email: saved on answer
        *profile_field_states(),
    ),
    transitions={PROFILE_CHOOSE: tuple(state_id("profile", field) for field in PROFILE_FIELDS)},
    timeout=timedelta(minutes=30),
    on_stale=profile_stale,
)

member_info = Command(
    name="member_info",
    entry_points=(Postback("member_info"), Keyword("会員情報", "会員情報を見る", "member info")),
    run=show_member_info,
)

marketing = Command(
    name="marketing",
    entry_points=(Postback("marketing"), Keyword("配信停止", "お知らせ停止", "お知らせを停止する", "お知らせを受け取らない")),
    run=set_marketing,
)

privacy_accept = Command(
    name="privacy_accept",
    entry_points=(Postback("privacy_accept"),),
    run=accept_privacy_notice,
)

FLOWS = (registration, profile, withdrawal)
COMMANDS = (member_info, marketing, privacy_accept)
