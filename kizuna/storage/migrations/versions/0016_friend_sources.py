"""friend-add sources (流入経路): the sources, who came through which (first source wins), and
every verified visit

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 14:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('friend_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('clicks', sa.Integer(), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('friend_source_attributions',
    sa.Column('line_user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('attributed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['source_id'], ['friend_sources.id'], ),
    sa.PrimaryKeyConstraint('line_user_id')
    )
    with op.batch_alter_table('friend_source_attributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_friend_source_attributions_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_friend_source_attributions_source_id'), ['source_id'], unique=False)

    op.create_table('friend_source_visits',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('line_user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('friendship_changed', sa.Boolean(), nullable=False),
    sa.Column('attributed', sa.Boolean(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['friend_sources.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('friend_source_visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_friend_source_visits_source_id'), ['source_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('friend_source_visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_friend_source_visits_source_id'))
    op.drop_table('friend_source_visits')
    with op.batch_alter_table('friend_source_attributions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_friend_source_attributions_source_id'))
        batch_op.drop_index(batch_op.f('ix_friend_source_attributions_customer_id'))
    op.drop_table('friend_source_attributions')
    op.drop_table('friend_sources')
