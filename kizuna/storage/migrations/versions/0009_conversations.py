"""conversations: support threads after a handoff, and staff's private notes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('conversations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('labels', JSON, nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('waiting_since', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_response_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('csat_score', sa.Integer(), nullable=True),
    sa.Column('csat_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'open', 'resolved')", name='ck_conversations_status'),
    sa.CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name='ck_conversations_priority'),
    sa.CheckConstraint('csat_score IS NULL OR csat_score BETWEEN 1 AND 5', name='ck_conversations_csat_score'),
    sa.ForeignKeyConstraint(['assignee_id'], ['staff.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_customer_id', ['customer_id', 'id'], unique=False)
        batch_op.create_index('ix_conversations_status_waiting', ['status', 'waiting_since'], unique=False)
        batch_op.create_index('ux_conversations_active_customer', ['customer_id'], unique=True,
                              sqlite_where=sa.text("status != 'resolved'"), postgresql_where=sa.text("status != 'resolved'"))

    op.create_table('conversation_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('author', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('conversation_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conversation_notes_conversation_id'), ['conversation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('conversation_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversation_notes_conversation_id'))
    op.drop_table('conversation_notes')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ux_conversations_active_customer', sqlite_where=sa.text("status != 'resolved'"),
                            postgresql_where=sa.text("status != 'resolved'"))
        batch_op.drop_index('ix_conversations_status_waiting')
        batch_op.drop_index('ix_conversations_customer_id')
    op.drop_table('conversations')
