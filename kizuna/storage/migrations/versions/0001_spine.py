"""the spine: customers, timeline, events, deliveries, tokens

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 03:38:48.188554
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('token_prefix', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('bot_texts',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('locale', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', 'locale')
    )
    op.create_table('customers',
    sa.Column('line_user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('picture_url', sa.Text(), nullable=True),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('followed', sa.Boolean(), nullable=False),
    sa.Column('blocked', sa.Boolean(), nullable=False),
    sa.Column('followed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('unfollowed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('profile_refreshed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_interaction_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('line_user_id')
    )
    op.create_table('inbound_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('webhook_event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('source_key', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('line_user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('event_timestamp', sa.BigInteger(), nullable=False),
    sa.Column('is_redelivery', sa.Boolean(), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('received_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('webhook_event_id')
    )
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_events_source_status_ts', ['source_key', 'status', 'event_timestamp', 'id'], unique=False)
        batch_op.create_index('ix_inbound_events_status_received', ['status', 'received_at'], unique=False)

    op.create_table('shops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('default_locale', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # One shop per installation today; its row is where shop-wide settings live.
    op.bulk_insert(
        sa.table("shops", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("code", sa.String),
                 sa.column("timezone", sa.String), sa.column("default_locale", sa.String),
                 sa.column("created_at", kizuna.storage.types.UTCDateTime(timezone=True))),
        [{"id": 1, "name": "Kizuna Shop", "code": "KZN", "timezone": "Asia/Tokyo", "default_locale": "ja",
          "created_at": kizuna.storage.types.utcnow()}],
    )
    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('sender_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sender_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('inbound_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reply_token', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('reply_deadline', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('messages', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('retry_key', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('line_request_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['inbound_event_id'], ['inbound_events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('retry_key')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_deliveries_status_created', ['status', 'created_at'], unique=False)

    op.create_table('interactions',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('sender_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sender_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('inbound_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ),
    sa.ForeignKeyConstraint(['inbound_event_id'], ['inbound_events.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index('ix_interactions_customer_id_id', ['customer_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index('ix_interactions_customer_id_id')

    op.drop_table('interactions')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_status_created')
        batch_op.drop_index(batch_op.f('ix_deliveries_customer_id'))

    op.drop_table('deliveries')
    op.drop_table('shops')
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_events_status_received')
        batch_op.drop_index('ix_inbound_events_source_status_ts')

    op.drop_table('inbound_events')
    op.drop_table('customers')
    op.drop_table('bot_texts')
    op.drop_table('api_tokens')
