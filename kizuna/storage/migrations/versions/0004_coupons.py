"""coupons: offers and the grants given to customers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 03:54:08.792779
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coupons',
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('discount_type', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('discount_value', sa.Integer(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=True),
    sa.Column('valid_from', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('valid_until', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('one_per_customer', sa.Boolean(), nullable=False),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issued_count', sa.Integer(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('coupon_grants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('per_customer_key', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('issued_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redeemed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('redeemed_where', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('revoked_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    # One grant per customer for one-per-customer coupons, enforced by the database.
    sa.UniqueConstraint('coupon_id', 'customer_id', 'per_customer_key', name='uq_coupon_grants_per_customer')
    )
    with op.batch_alter_table('coupon_grants', schema=None) as batch_op:
        batch_op.create_index('ix_coupon_grants_customer_id_id', ['customer_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('coupon_grants', schema=None) as batch_op:
        batch_op.drop_index('ix_coupon_grants_customer_id_id')

    op.drop_table('coupon_grants')
    op.drop_table('coupons')
