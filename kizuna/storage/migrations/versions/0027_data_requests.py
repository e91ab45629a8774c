"""data-subject requests: customers.processing_stopped_at and erased_at, the request ledger
(data_requests) and third-party provision records (provision_records)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 20:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('processing_stopped_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('erased_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))

    op.create_table('data_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.CheckConstraint("kind IN ('export', 'correct', 'stop', 'resume', 'erase')", name='ck_data_requests_kind'),
    sa.CheckConstraint("status IN ('received', 'in_progress', 'done', 'refused')", name='ck_data_requests_status'),
    sa.CheckConstraint("channel IN ('console', 'api', 'line', 'email', 'phone', 'letter', 'in_store')", name='ck_data_requests_channel'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.create_index('ix_data_requests_requested_at', ['requested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_data_requests_customer_id'), ['customer_id'], unique=False)

    op.create_table('provision_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('customer_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('customer_count', sa.Integer(), nullable=False),
    sa.Column('format', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('data_request_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['data_request_id'], ['data_requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('provision_records', schema=None) as batch_op:
        batch_op.create_index('ix_provision_records_at', ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('provision_records', schema=None) as batch_op:
        batch_op.drop_index('ix_provision_records_at')
    op.drop_table('provision_records')
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_requests_customer_id'))
        batch_op.drop_index('ix_data_requests_requested_at')
    op.drop_table('data_requests')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
        batch_op.drop_column('processing_stopped_at')
