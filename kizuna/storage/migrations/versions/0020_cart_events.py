"""cart events: the ledger of the shop's cart events (added, removed, checkout_started,
abandoned), unique on the shop's idempotency key; the events themselves are timeline rows

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 14:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cart_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('occurred_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('added', 'removed', 'checkout_started', 'abandoned')", name='ck_cart_events_kind'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('external_id')
    )


def downgrade() -> None:
    op.drop_table('cart_events')
