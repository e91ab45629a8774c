"""automation rules (IF → THEN): the rules, the causes they react to (recorded with the facts),
their firings (unique per rule and cause), the webhook calls they make, who was in a
segment_entered rule's segment at its last look, and the settings of the
daily looks (birthday month, coupons about to expire) with the built-in coupon reminder

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 19:58:10.476145
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('automation_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('trigger_value', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('trigger_options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('conditions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('actions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('webhook_secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('segment_checked_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("trigger IN ('tag_added', 'tag_removed', 'link_tapped', 'order_placed', 'api_event', 'segment_entered', 'registration_completed', 'friend_source', 'birthday_month', 'coupon_expiring')", name='ck_automation_rules_trigger'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('automation_rules', schema=None) as batch_op:
        batch_op.create_index('ix_automation_rules_trigger', ['trigger', 'enabled'], unique=False)

    op.create_table('automation_segment_members',
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], ),
    sa.PrimaryKeyConstraint('rule_id', 'customer_id')
    )
    op.create_table('automation_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('daily_hour', sa.Integer(), nullable=False),
    sa.Column('coupon_reminder_days', sa.Integer(), nullable=False),
    sa.Column('coupon_reminder_enabled', sa.Boolean(), nullable=False),
    sa.Column('coupon_reminder_text', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('birthday_ran_on', sa.Date(), nullable=True),
    sa.Column('coupons_ran_on', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('automation_causes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('ref_id', sa.BigInteger(), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('evaluated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('tag_added', 'tag_removed', 'link_tapped', 'order_placed', 'api_event', 'segment_entered', 'registration_completed', 'friend_source', 'birthday_month', 'coupon_expiring')", name='ck_automation_causes_kind'),
    sa.CheckConstraint("status IN ('pending', 'evaluated', 'too_deep')", name='ck_automation_causes_status'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('automation_causes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_automation_causes_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_automation_causes_pending', ['id'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))

    op.create_table('automation_firings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('cause_id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('outcomes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('done', 'conditions_unmet')", name='ck_automation_firings_status'),
    sa.ForeignKeyConstraint(['cause_id'], ['automation_causes.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rule_id', 'cause_id', name='uq_automation_firings_rule_cause')
    )
    with op.batch_alter_table('automation_firings', schema=None) as batch_op:
        batch_op.create_index('ix_automation_firings_rule', ['rule_id', 'id'], unique=False)

    op.create_table('automation_webhook_calls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('firing_id', sa.BigInteger(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')", name='ck_automation_webhook_calls_status'),
    sa.ForeignKeyConstraint(['firing_id'], ['automation_firings.id'], ),
    sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('automation_webhook_calls', schema=None) as batch_op:
        batch_op.create_index('ix_automation_webhook_calls_due', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.create_index(batch_op.f('ix_automation_webhook_calls_firing_id'), ['firing_id'], unique=False)

    # The settings row (written out, not imported: this migration stays what it was when the code changes).
    settings = sa.table('automation_settings', sa.column('id', sa.Integer), sa.column('daily_hour', sa.Integer),
                        sa.column('coupon_reminder_days', sa.Integer), sa.column('coupon_reminder_enabled', sa.Boolean),
                        sa.column('coupon_reminder_text', sa.String))
    op.bulk_insert(settings, [{'id': 1, 'daily_hour': 9, 'coupon_reminder_days': 3, 'coupon_reminder_enabled': True,
                               'coupon_reminder_text': '{name}さん、クーポンの有効期限が近づいています。お早めにご利用ください。'}])


def downgrade() -> None:
    with op.batch_alter_table('automation_webhook_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_automation_webhook_calls_firing_id'))
        batch_op.drop_index('ix_automation_webhook_calls_due', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))

    op.drop_table('automation_webhook_calls')
    with op.batch_alter_table('automation_firings', schema=None) as batch_op:
        batch_op.drop_index('ix_automation_firings_rule')

    op.drop_table('automation_firings')
    with op.batch_alter_table('automation_causes', schema=None) as batch_op:
        batch_op.drop_index('ix_automation_causes_pending', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_automation_causes_customer_id'))

    op.drop_table('automation_causes')
    op.drop_table('automation_settings')
    op.drop_table('automation_segment_members')
    with op.batch_alter_table('automation_rules', schema=None) as batch_op:
        batch_op.drop_index('ix_automation_rules_trigger')

    op.drop_table('automation_rules')
