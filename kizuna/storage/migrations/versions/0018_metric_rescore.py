"""metric rescore: a settings change asks the workers to rescore everyone (when it was asked,
and when a worker took it on) instead of rescoring inside the request

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 14:45:00.000000
"""
from alembic import op
import sqlalchemy as sa
import kizuna.storage.types


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('metric_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rescore_requested_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('rescore_claimed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('metric_settings', schema=None) as batch_op:
        batch_op.drop_column('rescore_claimed_at')
        batch_op.drop_column('rescore_requested_at')
