"""privacy and withdrawal (issue 16 parts 1-2): privacy notice versions, the consent ledger,
which notice version a customer accepted and when they withdrew (退会), the shop's
withdrawal_data setting, and "withdrawn" as a sequence exit reason.

A first notice version is published here (the URL the bot already showed) so a fresh install
works, and the customers registered before this release are recorded as having accepted it:
their privacy_notice_id points at it, and the ledger gets their membership/analytics grant (at
privacy_consented_at) and their marketing choice (at marketing_consent_changed_at), in two
set-based INSERT ... SELECTs, actor "migration 0023".

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 20:15:00.000000
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

EXIT_BEFORE = "exit_reason IN ('ordered_again', 'blocked', 'opted_out', 'tag_removed', 'cancelled_by_event', 'not_on_line')"
EXIT_AFTER = "exit_reason IN ('ordered_again', 'blocked', 'opted_out', 'tag_removed', 'cancelled_by_event', 'not_on_line', 'withdrawn')"

FIRST_NOTICE_TEXT = (
    "当店は、会員登録でお預かりしたお客様の情報（お名前、生年月日、性別、都道府県、電話番号、メールアドレス）と、"
    "LINEでのやりとり・ご購入の履歴を、次の目的に利用します。ご本人の同意なく第三者に提供することはありません。"
    "開示・訂正・利用停止・削除のご請求は、LINEのトークで「担当者」とお送りください。退会は「退会」とお送りください。"
)
FIRST_PURPOSES = {
    "membership": "会員サービスの提供（会員情報の管理、会員特典クーポンの発行、お問い合わせへの対応）",
    "marketing": "お得な情報やクーポンなどのお知らせの配信（ご希望の方のみ。いつでも停止できます）",
    "analytics": "ご購入やご利用の傾向の分析による、商品・サービスの改善",
}


def upgrade() -> None:
    notices = op.create_table('privacy_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('purposes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('published_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version')
    )
    op.create_table('consent_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('notice_id', sa.Integer(), nullable=True),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("action IN ('granted', 'withdrawn')", name='ck_consent_records_action'),
    sa.CheckConstraint("channel IN ('line_chat', 'console', 'api', 'import')", name='ck_consent_records_channel'),
    sa.CheckConstraint("purpose IN ('membership', 'marketing', 'analytics')", name='ck_consent_records_purpose'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['notice_id'], ['privacy_notices.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.create_index('ix_consent_records_at', ['at'], unique=False)
        batch_op.create_index('ix_consent_records_customer', ['customer_id', 'id'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('privacy_notice_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('fk_customers_privacy_notice_id', 'privacy_notices', ['privacy_notice_id'], ['id'])

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('withdrawal_data', sqlmodel.sql.sqltypes.AutoString(length=8), server_default='delete', nullable=False))
        batch_op.create_check_constraint('ck_shops_withdrawal_data', "withdrawal_data IN ('delete', 'keep')")

    with op.batch_alter_table('sequence_enrolments', schema=None) as batch_op:
        batch_op.drop_constraint('ck_sequence_enrolments_exit_reason', type_='check')
        batch_op.create_check_constraint('ck_sequence_enrolments_exit_reason', EXIT_AFTER)

    _seed_first_notice(notices)


def _seed_first_notice(notices: sa.Table) -> None:
    bind = op.get_bind()
    earliest = bind.execute(sa.text("SELECT MIN(privacy_consented_at) FROM customers")).scalar()
    now = datetime.now(timezone.utc)
    if isinstance(earliest, str):  # SQLite hands back the stored text
        earliest = datetime.fromisoformat(earliest)
    if earliest is not None and earliest.tzinfo is None:
        earliest = earliest.replace(tzinfo=timezone.utc)
    published_at = min(earliest, now) if earliest is not None else now
    op.bulk_insert(notices, [{
        'version': '1', 'url': 'https://example.com/privacy', 'text': FIRST_NOTICE_TEXT, 'purposes': FIRST_PURPOSES,
        'published_at': published_at, 'published_by': 'migration 0023',
    }])
    notice_id = bind.execute(sa.text("SELECT id FROM privacy_notices WHERE version = '1'")).scalar_one()
    params = {"notice": notice_id}
    bind.execute(sa.text(
        "UPDATE customers SET privacy_notice_id = :notice WHERE registered AND privacy_consented_at IS NOT NULL"), params)
    for purpose in ("membership", "analytics"):
        bind.execute(sa.text(
            "INSERT INTO consent_records (customer_id, purpose, action, notice_id, channel, actor, at) "
            f"SELECT id, '{purpose}', 'granted', :notice, 'line_chat', 'migration 0023', privacy_consented_at "
            "FROM customers WHERE registered AND privacy_consented_at IS NOT NULL ORDER BY id"), params)
    bind.execute(sa.text(
        "INSERT INTO consent_records (customer_id, purpose, action, notice_id, channel, actor, at) "
        "SELECT id, 'marketing', CASE WHEN marketing_opt_in THEN 'granted' ELSE 'withdrawn' END, :notice, 'line_chat', "
        "'migration 0023', marketing_consent_changed_at "
        "FROM customers WHERE registered AND marketing_consent_changed_at IS NOT NULL ORDER BY id"), params)


def downgrade() -> None:
    op.execute("UPDATE sequence_enrolments SET exit_reason = 'opted_out' WHERE exit_reason = 'withdrawn'")
    with op.batch_alter_table('sequence_enrolments', schema=None) as batch_op:
        batch_op.drop_constraint('ck_sequence_enrolments_exit_reason', type_='check')
        batch_op.create_check_constraint('ck_sequence_enrolments_exit_reason', EXIT_BEFORE)

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_constraint('ck_shops_withdrawal_data', type_='check')
        batch_op.drop_column('withdrawal_data')

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_constraint('fk_customers_privacy_notice_id', type_='foreignkey')
        batch_op.drop_column('withdrawn_at')
        batch_op.drop_column('privacy_notice_id')

    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_records_customer')
        batch_op.drop_index('ix_consent_records_at')

    op.drop_table('consent_records')
    op.drop_table('privacy_notices')
