"""support console: canned responses, customer tags, cached media, and the delivery kind
mark_read (marking a customer's messages read on LINE goes through the outbox)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# Written out, not imported: this migration stays what it was when the enum changes.
KINDS_BEFORE = "kind IN ('message', 'rich_menu')"
KINDS_AFTER = "kind IN ('message', 'rich_menu', 'mark_read')"


def upgrade() -> None:
    op.create_table('canned_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shortcut', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shortcut')
    )
    op.create_table('customer_tags',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('customer_id', 'tag')
    )
    with op.batch_alter_table('customer_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_tags_tag'), ['tag'], unique=False)
    op.create_table('media_contents',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('fetched_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    # Batch mode: SQLite changes a CHECK constraint by rebuilding the table.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('ck_deliveries_kind', type_='check')
        batch_op.create_check_constraint('ck_deliveries_kind', KINDS_AFTER)


def downgrade() -> None:
    # Marking messages read is best effort: its rows may go rather than block the downgrade.
    op.execute(sa.text("DELETE FROM deliveries WHERE kind = 'mark_read'"))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('ck_deliveries_kind', type_='check')
        batch_op.create_check_constraint('ck_deliveries_kind', KINDS_BEFORE)
    op.drop_table('media_contents')
    with op.batch_alter_table('customer_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_tags_tag'))
    op.drop_table('customer_tags')
    op.drop_table('canned_responses')
