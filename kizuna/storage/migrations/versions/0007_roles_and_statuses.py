"""roles and statuses: the token role staff becomes support; CHECK constraints for every
status and kind column (the values of their enums in storage/models.py and storage/roles.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# (table, column, values) as the models declared them at this revision; written out here, not
# imported, so this migration stays what it was when the enums change.
CONSTRAINTS = (
    ('api_tokens', 'role', ('admin', 'marketer', 'support', 'pos')),
    ('inbound_events', 'status', ('pending', 'done', 'parked')),
    ('interactions', 'direction', ('in', 'out', 'sys')),
    ('deliveries', 'status', ('pending', 'sending', 'sent', 'failed', 'undetermined')),
    ('coupons', 'discount_type', ('amount', 'percent')),
    ('coupons', 'trigger', ('registration',)),
    ('coupon_grants', 'status', ('issued', 'redeemed', 'revoked')),
    ('keyword_rules', 'match_type', ('exact', 'contains', 'regex')),
)


def _tables() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    tables: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for table, column, values in CONSTRAINTS:
        tables.setdefault(table, []).append((column, values))
    return tables


def upgrade() -> None:
    # One name for one thing: the API token role "staff" is the role "support" of staff accounts.
    op.execute(sa.text("UPDATE api_tokens SET role = 'support' WHERE role = 'staff'"))
    for table, columns in _tables().items():
        # Batch mode: SQLite adds a constraint by rebuilding the table (once per table).
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, values in columns:
                listed = ", ".join(f"'{value}'" for value in values)
                batch_op.create_check_constraint(f'ck_{table}_{column}', f"{column} IN ({listed})")


def downgrade() -> None:
    for table, columns in _tables().items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, _values in columns:
                batch_op.drop_constraint(f'ck_{table}_{column}', type_='check')
    op.execute(sa.text("UPDATE api_tokens SET role = 'staff' WHERE role = 'support'"))
