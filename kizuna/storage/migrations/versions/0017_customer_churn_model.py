"""churn model: per-customer expected purchases and model-based LTV beside p_alive, and the
model's claim time and last run (fitted parameters or why not) in metric_settings

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 14:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
import kizuna.storage.types


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer_metrics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expected_purchases', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('model_ltv', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('metric_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('churn_model_claimed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('churn_model', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('metric_settings', schema=None) as batch_op:
        batch_op.drop_column('churn_model')
        batch_op.drop_column('churn_model_claimed_at')
    with op.batch_alter_table('customer_metrics', schema=None) as batch_op:
        batch_op.drop_column('model_ltv')
        batch_op.drop_column('expected_purchases')
