"""registration

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 03:46:16.363712
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('registered', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('registered_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('privacy_consented_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('full_name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        batch_op.add_column(sa.Column('birthday', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('gender', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('prefecture', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch_op.add_column(sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True))
        batch_op.add_column(sa.Column('marketing_opt_in', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('marketing_consent_changed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('marketing_consent_changed_at')
        batch_op.drop_column('marketing_opt_in')
        batch_op.drop_column('email')
        batch_op.drop_column('phone')
        batch_op.drop_column('prefecture')
        batch_op.drop_column('gender')
        batch_op.drop_column('birthday')
        batch_op.drop_column('full_name')
        batch_op.drop_column('privacy_consented_at')
        batch_op.drop_column('registered_at')
        batch_op.drop_column('registered')

