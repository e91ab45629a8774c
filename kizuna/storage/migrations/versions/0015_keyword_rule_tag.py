"""keyword rules tag the customer: keyword_rules.add_tag (a tag put on whoever sends a matching message)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 14:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('keyword_rules', sa.Column('add_tag', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('keyword_rules') as batch:
        batch.drop_column('add_tag')
