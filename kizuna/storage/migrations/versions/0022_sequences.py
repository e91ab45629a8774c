"""step sequences (ステップ配信): the sequences, their enrolments (one active per sequence and
customer), who was in a segment_entered sequence's segment at its last look, and the events
the shop's systems send (POST /api/v1/events)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 16:51:38.632513
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('sequences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('trigger_value', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('exit_on_order', sa.Boolean(), nullable=False),
    sa.Column('exit_on_tag_removed', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('cancel_on', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('window_start', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
    sa.Column('window_end', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_fallback', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('steps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('segment_checked_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('active', 'paused', 'archived')", name='ck_sequences_status'),
    sa.CheckConstraint("trigger IN ('registered', 'first_order', 'tag_added', 'friend_source', 'api_event', 'segment_entered')", name='ck_sequences_trigger'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sequences', schema=None) as batch_op:
        batch_op.create_index('ix_sequences_trigger', ['trigger', 'trigger_value'], unique=False)

    op.create_table('api_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('api_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_events_customer_id'), ['customer_id'], unique=False)

    op.create_table('sequence_segment_members',
    sa.Column('sequence_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['sequence_id'], ['sequences.id'], ),
    sa.PrimaryKeyConstraint('sequence_id', 'customer_id')
    )
    op.create_table('sequence_enrolments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sequence_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('exit_reason', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
    sa.Column('current_step', sa.Integer(), nullable=False),
    sa.Column('enrolled_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_due_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_sent_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("exit_reason IN ('ordered_again', 'blocked', 'opted_out', 'tag_removed', 'cancelled_by_event', 'not_on_line')", name='ck_sequence_enrolments_exit_reason'),
    sa.CheckConstraint("status IN ('active', 'completed', 'exited')", name='ck_sequence_enrolments_status'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['sequence_id'], ['sequences.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sequence_enrolments', schema=None) as batch_op:
        batch_op.create_index('ix_sequence_enrolments_customer', ['customer_id', 'status'], unique=False)
        batch_op.create_index('ix_sequence_enrolments_due', ['next_due_at'], unique=False, postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.create_index('uq_sequence_enrolments_active', ['sequence_id', 'customer_id'], unique=True, postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))




def downgrade() -> None:

    with op.batch_alter_table('sequence_enrolments', schema=None) as batch_op:
        batch_op.drop_index('uq_sequence_enrolments_active', postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_sequence_enrolments_due', postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_sequence_enrolments_customer')

    op.drop_table('sequence_enrolments')
    op.drop_table('sequence_segment_members')
    with op.batch_alter_table('api_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_events_customer_id'))

    op.drop_table('api_events')
    with op.batch_alter_table('sequences', schema=None) as batch_op:
        batch_op.drop_index('ix_sequences_trigger')

    op.drop_table('sequences')

