"""customer metrics and segments: per-customer purchase metrics kept current by the order upsert
(backfilled here from the orders there are), the shop's metric settings, saved segments

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 12:00:00.000000
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects import postgresql
import kizuna.storage.types


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_metrics',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('first_order_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_order_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('frequency', sa.Integer(), nullable=False),
    sa.Column('monetary', sa.BigInteger(), nullable=False),
    sa.Column('average_order_value', sa.Integer(), nullable=False),
    sa.Column('f2', sa.Boolean(), nullable=False),
    sa.Column('rfm_f', sa.Integer(), nullable=True),
    sa.Column('rfm_m', sa.Integer(), nullable=True),
    sa.Column('decile', sa.Integer(), nullable=True),
    sa.Column('ltv', sa.BigInteger(), nullable=False),
    sa.Column('p_alive', sa.Float(), nullable=True),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('customer_id')
    )
    with op.batch_alter_table('customer_metrics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_metrics_last_order_at'), ['last_order_at'], unique=False)

    op.create_table('metric_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('overrides', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deciles_refreshed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('rule', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )

    # Backfill from the orders there are, with the default rules (no settings row exists yet).
    # The statements are the ones the application runs (storage/customer_metrics.py): a copy
    # frozen here could only drift from them. A later change to that module that no longer fits
    # this revision's table must freeze its SQL here.
    from kizuna.storage import customer_metrics
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    bind.execute(customer_metrics.refresh_statement(bind.dialect.name, customer_metrics.DEFAULT_RULES, now, None))
    for statement in customer_metrics.decile_statements():
        bind.execute(statement)


def downgrade() -> None:
    op.drop_table('segments')
    op.drop_table('metric_settings')
    with op.batch_alter_table('customer_metrics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_metrics_last_order_at'))

    op.drop_table('customer_metrics')
