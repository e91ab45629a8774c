"""sealed TOTP secrets: staff.totp_secret holds a Fernet token (storage/sealed.py), longer than
the base32 secret it seals. Secrets stored before are sealed by the app when next read (the
migration does not know the installation's key).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 14:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staff') as batch:
        batch.alter_column('totp_secret', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64),
                           type_=sqlmodel.sql.sqltypes.AutoString(length=255), existing_nullable=True)


def downgrade() -> None:
    # A sealed secret does not fit the old column: those accounts set their second factor up again.
    op.execute(sa.text("UPDATE staff SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL "
                       "WHERE length(totp_secret) > 64"))
    with op.batch_alter_table('staff') as batch:
        batch.alter_column('totp_secret', existing_type=sqlmodel.sql.sqltypes.AutoString(length=255),
                           type_=sqlmodel.sql.sqltypes.AutoString(length=64), existing_nullable=True)
