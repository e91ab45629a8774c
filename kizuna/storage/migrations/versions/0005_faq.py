"""faq: FAQ entries, keyword rules, inquiry settings (business hours, thresholds, revisions)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 05:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('faq_entries',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('question', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('alternates', JSON, nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    inquiry_settings = op.create_table('inquiry_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('faq_revision', sa.BigInteger(), nullable=False),
    sa.Column('config_revision', sa.BigInteger(), nullable=False),
    sa.Column('weekly_hours', JSON, nullable=True),
    sa.Column('holidays', JSON, nullable=False),
    sa.Column('thresholds', JSON, nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('keyword_rules',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('match_type', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('pattern', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('reply_text', sa.Text(), nullable=True),
    sa.Column('flow_action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # The one settings row; the application also recreates it if it is missing.
    from datetime import datetime, timezone
    op.bulk_insert(inquiry_settings, [{
        "id": 1, "faq_revision": 0, "config_revision": 0, "weekly_hours": None, "holidays": [], "thresholds": {},
        "updated_at": datetime.now(timezone.utc),
    }])


def downgrade() -> None:
    op.drop_table('keyword_rules')
    op.drop_table('inquiry_settings')
    op.drop_table('faq_entries')
