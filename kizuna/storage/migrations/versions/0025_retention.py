"""retention and breach scoping (issue 16): the shop's retention policies, the purge runs (a
scheduled run's shop-local date unique: N workers run it once), which customers each audit
entry read, API tokens' expiry, and the indexes the purge and the breach report look up by

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 19:58:39.925383
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_customer_reads',
    sa.Column('audit_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('audit_entry_id', 'customer_id')
    )
    with op.batch_alter_table('audit_customer_reads', schema=None) as batch_op:
        batch_op.create_index('ix_audit_customer_reads_customer', ['customer_id'], unique=False)

    op.create_table('retention_policies',
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    sa.CheckConstraint("unit IN ('days', 'months')", name='ck_retention_policies_unit'),
    sa.CheckConstraint('period >= 1', name='ck_retention_policies_period'),
    sa.PrimaryKeyConstraint('kind')
    )
    op.create_table('retention_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scheduled_for', sa.Date(), nullable=True),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('started_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'done', 'incomplete', 'failed')", name='ck_retention_runs_status'),
    sa.CheckConstraint("trigger IN ('schedule', 'console', 'cli')", name='ck_retention_runs_trigger'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scheduled_for')
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_actor_at', ['actor', 'at'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_inbound_event', ['inbound_event_id'], unique=False, postgresql_where=sa.text('inbound_event_id IS NOT NULL'), sqlite_where=sa.text('inbound_event_id IS NOT NULL'))

    # A LINE pictureUrl that is not https: is never kept (storage/customers.py https_url): the ones
    # stored before go too.
    op.execute("UPDATE customers SET picture_url = NULL WHERE picture_url IS NOT NULL AND picture_url NOT LIKE 'https://%'")

    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index('ix_interactions_delivery', ['delivery_id'], unique=False, postgresql_where=sa.text('delivery_id IS NOT NULL'), sqlite_where=sa.text('delivery_id IS NOT NULL'))
        batch_op.create_index('ix_interactions_inbound_event', ['inbound_event_id'], unique=False, postgresql_where=sa.text('inbound_event_id IS NOT NULL'), sqlite_where=sa.text('inbound_event_id IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index('ix_interactions_inbound_event', postgresql_where=sa.text('inbound_event_id IS NOT NULL'), sqlite_where=sa.text('inbound_event_id IS NOT NULL'))
        batch_op.drop_index('ix_interactions_delivery', postgresql_where=sa.text('delivery_id IS NOT NULL'), sqlite_where=sa.text('delivery_id IS NOT NULL'))

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_inbound_event', postgresql_where=sa.text('inbound_event_id IS NOT NULL'), sqlite_where=sa.text('inbound_event_id IS NOT NULL'))

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_actor_at')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')

    op.drop_table('retention_runs')
    op.drop_table('retention_policies')
    with op.batch_alter_table('audit_customer_reads', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_customer_reads_customer')

    op.drop_table('audit_customer_reads')
