"""campaign delivery modes and recurrence: narrowcast to a LINE audience (campaigns.delivery,
by_narrowcast, narrowcast_sent_at; one campaign_narrowcasts row per variant, its stages stored)
and recurring campaigns (campaigns.recurrence; each run a child with parent_id and occurrence_at)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 20:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='auto'))
        batch_op.add_column(sa.Column('by_narrowcast', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('narrowcast_sent_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('recurrence', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('occurrence_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('fk_campaigns_parent_id_campaigns', 'campaigns', ['parent_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_campaigns_parent_id'), ['parent_id'], unique=False)
        batch_op.create_unique_constraint('uq_campaigns_parent_occurrence', ['parent_id', 'occurrence_at'])
        batch_op.create_check_constraint('ck_campaigns_delivery', "delivery IN ('auto', 'multicast', 'narrowcast')")
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.alter_column('delivery', server_default=None)
        batch_op.alter_column('by_narrowcast', server_default=None)

    op.create_table('campaign_narrowcasts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('audience_group_id', sa.BigInteger(), nullable=True),
    sa.Column('uploaded_through', sa.Integer(), nullable=False),
    sa.Column('uploaded', sa.Integer(), nullable=False),
    sa.Column('retry_key', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('first_attempt_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('duplicate', sa.Boolean(), nullable=False),
    sa.Column('lease_until', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_look_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('target_count', sa.Integer(), nullable=True),
    sa.Column('success_count', sa.Integer(), nullable=True),
    sa.Column('failure_count', sa.Integer(), nullable=True),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('audience_deleted', sa.Boolean(), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('uploading', 'waiting', 'sending', 'delivering', 'done', 'cancelled')", name='ck_campaign_narrowcasts_state'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.ForeignKeyConstraint(['variant_id'], ['campaign_variants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'variant_id'),
    sa.UniqueConstraint('retry_key')
    )
    with op.batch_alter_table('campaign_narrowcasts', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_narrowcasts_state', ['state', 'next_look_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('campaign_narrowcasts', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_narrowcasts_state')
    op.drop_table('campaign_narrowcasts')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_constraint('ck_campaigns_delivery', type_='check')
        batch_op.drop_constraint('uq_campaigns_parent_occurrence', type_='unique')
        batch_op.drop_index(batch_op.f('ix_campaigns_parent_id'))
        batch_op.drop_constraint('fk_campaigns_parent_id_campaigns', type_='foreignkey')
        batch_op.drop_column('occurrence_at')
        batch_op.drop_column('parent_id')
        batch_op.drop_column('recurrence')
        batch_op.drop_column('narrowcast_sent_at')
        batch_op.drop_column('by_narrowcast')
        batch_op.drop_column('delivery')
