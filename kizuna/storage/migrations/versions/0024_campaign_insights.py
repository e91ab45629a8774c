"""LINE's insight of a campaign's aggregation unit, cached (campaign_insights); deliveries indexed
by sender_id (a step sequence's per-step results read its steps' deliveries)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 20:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign_insights',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('figures', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('fetched_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('ready', 'not_ready', 'failed')", name='ck_campaign_insights_status'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.PrimaryKeyConstraint('campaign_id')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_sender_id', ['sender_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_sender_id')
    op.drop_table('campaign_insights')
