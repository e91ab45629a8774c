"""segment indexes: customer_metrics by recency with the presets' columns (index-only counts), and
the merged customers (segments read from customer_metrics alone keep them out by an anti-join)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 14:45:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_metrics_last_order_at')
        batch_op.create_index('ix_customer_metrics_recency', ['last_order_at', 'frequency', 'rfm_f', 'rfm_m', 'customer_id'],
                              unique=False)
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_merged', ['id'], unique=False,
                              postgresql_where=sa.text('merged_into_id IS NOT NULL'),
                              sqlite_where=sa.text('merged_into_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_merged', postgresql_where=sa.text('merged_into_id IS NOT NULL'),
                            sqlite_where=sa.text('merged_into_id IS NOT NULL'))
    with op.batch_alter_table('customer_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_metrics_recency')
        batch_op.create_index('ix_customer_metrics_last_order_at', ['last_order_at'], unique=False)
