"""The REST API against its own OpenAPI document, with schemathesis (issue 12).

A running Kizuna (real HTTP, the database of the run: SQLite, or PostgreSQL + Redis) with a
few rows to find, and schemathesis' CLI run against /api/v1/openapi.json with the checks that
make the document a contract: no 5xx, only documented statuses, documented content types,
responses that match their schemas, valid requests accepted, and 405 with the right `Allow`
for methods a path does not have.

Bounded and deterministic: every operation gets at most MAX_EXAMPLES generated cases in the
fuzzing phase (the only phase that number bounds, beside examples and coverage) from
schemathesis' deterministic generation, run by one
worker so the rows each case sees do not depend on timing (the count is printed with -s; with
MAX_EXAMPLES 100 it was 7,616 cases for 60-odd operations, over a minute on the two-core
development machine; at 50 and 120-odd operations, over 9 minutes on PostgreSQL with CI's other
suite beside it; at 20, 70-odd seconds). A longer run by hand (500 per operation, random seeds)
found nothing more.

The trade at MAX_EXAMPLES 5 (6,001 cases, 39 s on SQLite): every operation is still run in each
phase. The examples phase (the document's own examples) and the coverage phase (each parameter's
and field's boundaries and wrong types, and the methods a path does not have: most of the cases)
do not depend on MAX_EXAMPLES; what is cut is the fuzzing phase's random bodies, from 20 to 5 per
operation (the deep search for a rare body is the hand run's job, not every CI run's).

What JSON Schema cannot say is listed in EXEMPT below, each with the server's rule: there a 400
(or 410/422) answer to a schema-valid request is expected. Everything else, and every 5xx,
fails the test with schemathesis' report, which has a curl line for each failure.
"""

from __future__ import annotations

import asyncio
import re
import sys

import pytest

from kizuna.storage import customers
from kizuna.storage.db import transaction

MAX_EXAMPLES = 5
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "positive_data_acceptance", "unsupported_method", "allow_header_conformance",
)
ACCEPTED = ["2xx", "401", "403", "404", "409"]  # schemathesis' default, without 3xx, 429 and 5xx
# Operations whose rules go beyond what their schema can say: a schema-valid request may be refused.
EXEMPT = {
    "import_faq": ("400",),  # a CSV file's header and rows (storage/faq.py parse_csv)
    "redeem_coupon": ("400", "410", "422"),  # a code's check character; expired, revoked, another shop's
    "create_coupon": ("400",),  # valid_days or valid_until; a percent at most 100; valid_from < valid_until
    "update_coupon": ("400",),  # the same rules, on the coupon as stored with the change applied
    "create_keyword_rule": ("400",),  # a regex fast enough on long messages (flows/faq/rules.py)
    "update_keyword_rule": ("400",),  # the same, and reply_text xor flow_action with the stored rule
    "put_business_hours": ("400",),  # a day's intervals close after they open and do not overlap
    "post_orders": ("400",),  # a customer reference per order, each a value of its kind; external_id once per batch
    "post_cart_events": ("400",),  # a customer reference per event, each a value of its kind; sku for added/removed; external_id once per batch
    "create_segment": ("400",),  # the rule language (campaigns/rules.py): fields, ops, value types, depth
    "preview_segment": ("400",),  # the same rules
    "put_metric_settings": ("400",),  # each threshold list ascending (storage/customer_metrics.check_rules)
    # a tag is normalised (NFKC may lengthen it past 40; no control characters) and a customer has at most 50
    "add_customer_tag": ("400",),
    "remove_customer_tag": ("400",),
    "create_friend_source": ("400",),  # its tag follows the tag rules
    "tag_segment": ("400",),  # the same tag rules; and a stored rule the language no longer accepts
    "upsert_customers": ("400",),  # a reference per record, each a value of its kind; a prefecture; external id once per batch
    # the rule language; LINE's message objects (campaigns/messages.py); the variants' percents add up to 100; send_at
    # with an offset and not in the past
    "create_campaign": ("400",),
    "create_sequence": ("400",),  # a coupon that exists; the tag rules for tag_added and tag_removed
    "update_sequence": ("400",),  # as create_sequence
    "post_event": ("400",),  # a customer reference, each a value of its kind
    "publish_notice": ("400",),  # url an https:// address; no control characters; a one-line version label
    "audit_reads_report": ("400",),  # until after since, at most 400 days; a date-time Python reads (no leap second)
    # each action's own field (tag, sequence_id …) for its type; references that exist; an https webhook URL; the tag rules
    "create_automation": ("400",),
    "replace_automation": ("400",),
    "correct_customer": ("400",),  # each value reads as its kind (a name, a date, a phone ...), as registration reads them
}
TIMEOUT = 600  # seconds: a hang fails the test instead of CI (which runs both suites at once)


def config_toml() -> str:
    lines = [
        "[generation]",
        "deterministic = true",
        'database = "none"',
        # The document says it once for every text (info.description): NUL is refused with a 400.
        "allow-x00 = false",
        "[checks]",
        f"positive_data_acceptance.expected-statuses = {ACCEPTED!r}",
    ]
    for operation_id, statuses in EXEMPT.items():
        lines += ["[[operations]]", f'include-operation-id = "{operation_id}"',
                  f"checks.positive_data_acceptance.expected-statuses = {[*ACCEPTED, *statuses]!r}"]
    return "\n".join(lines).replace("'", '"') + "\n"


async def seed(kizuna) -> None:
    """A row behind the first id of each table, so cases with id 1 reach the views' real work."""
    async with transaction(kizuna.sessions) as session:
        customer, _ = await customers.get_or_create(session, "U" + "0" * 32, None)
    coupon = {"title": "初回500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 30}
    for method, path, body in (
        ("POST", "/api/v1/coupons", coupon),
        ("POST", "/api/v1/coupons/1/grants", {"customer_id": customer.id}),
        ("POST", "/api/v1/faq", {"id": "shipping", "question": "送料はいくら?", "answer": "550円です。"}),
        ("POST", "/api/v1/keyword-rules", {"match_type": "contains", "pattern": "営業時間", "reply_text": "10時から"}),
    ):
        status, answer = await kizuna.api(method, path, json=body)
        assert status == 201, answer


async def test_the_api_keeps_its_openapi_contract(kizuna, tmp_path):
    await seed(kizuna)
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_toml())
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{kizuna.url}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {kizuna.admin_token}", "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
        "--no-color", "--request-timeout", "10",
        # Hypothesis' timing check would make a busy CI machine fail a correct API.
        "--suppress-health-check", "too_slow",
    ]
    # The app serves on this event loop while schemathesis runs in its own process.
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                   cwd=tmp_path)
    output = (await asyncio.wait_for(process.communicate(), TIMEOUT))[0].decode(errors="replace")
    summary = re.search(r"(\d+) generated", output)
    print(f"schemathesis: {summary.group(1) if summary else '?'} cases")
    if process.returncode != 0:
        pytest.fail(f"schemathesis found disagreements (exit {process.returncode}):\n{output[-20000:]}", pytrace=False)
