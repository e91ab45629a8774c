"""delivery kinds: LINE-side effects (rich menu links) go through the outbox like messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects import postgresql


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='message'))
        batch_op.add_column(sa.Column('effect', JSON, nullable=True))
        batch_op.create_check_constraint('ck_deliveries_kind', "kind IN ('message', 'rich_menu')")
    # The default was only for the rows that existed; new rows always name their kind.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.alter_column('kind', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('ck_deliveries_kind', type_='check')
        batch_op.drop_column('effect')
        batch_op.drop_column('kind')
