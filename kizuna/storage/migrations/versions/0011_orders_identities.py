"""orders and identities: orders and their lines from the shop's EC site and POS, customers'
identities (LINE user id, external customer id, e-mail, phone; unique per kind and value) backfilled
from the customers there are, merge candidates, customers without a LINE user id (known only
from an order or a customer record) and their name in kana (from customer records)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 12:00:00.000000
"""
import unicodedata
from datetime import datetime, timezone

from alembic import op
import phonenumbers
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_identities',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('line_user_id', 'external_customer_id', 'email', 'phone')", name='ck_customer_identities_kind'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'value', name='uq_customer_identities_kind_value')
    )
    with op.batch_alter_table('customer_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_identities_customer_id'), ['customer_id'], unique=False)

    op.create_table('merge_candidates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('other_customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('line_user_id', 'external_customer_id', 'email', 'phone')", name='ck_merge_candidates_kind'),
    sa.CheckConstraint("status IN ('pending', 'merged', 'dismissed')", name='ck_merge_candidates_status'),
    sa.CheckConstraint('customer_id < other_customer_id', name='ck_merge_candidates_order'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['other_customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('customer_id', 'other_customer_id', name='uq_merge_candidates_pair')
    )
    with op.batch_alter_table('merge_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merge_candidates_other_customer_id'), ['other_customer_id'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('ordered_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('store', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("channel IN ('ec', 'store')", name='ck_orders_channel'),
    sa.CheckConstraint("status IN ('completed', 'cancelled', 'returned')", name='ck_orders_status'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('external_id')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_customer_id_ordered_at', ['customer_id', 'ordered_at'], unique=False)

    op.create_table('order_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('sku', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_id', 'line_no', name='uq_order_items_order_line')
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_kana', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        batch_op.alter_column('line_user_id',
               existing_type=sa.VARCHAR(length=64),
               nullable=True)
    _backfill_identities()


def downgrade() -> None:
    # Customers without a LINE user id cannot exist before this revision: they go, with what
    # hangs on them (orders and identities go with their tables below).
    without_line = "SELECT id FROM customers WHERE line_user_id IS NULL"
    op.execute(sa.text(f"DELETE FROM conversation_notes WHERE conversation_id IN "
                       f"(SELECT id FROM conversations WHERE customer_id IN ({without_line}))"))
    for table in ('interactions', 'deliveries', 'flow_states', 'coupon_grants', 'conversations', 'customer_tags'):
        op.execute(sa.text(f"DELETE FROM {table} WHERE customer_id IN ({without_line})"))
    op.execute(sa.text("DELETE FROM order_items"))
    op.execute(sa.text("DELETE FROM orders"))
    op.execute(sa.text("DELETE FROM customer_identities"))
    op.execute(sa.text("DELETE FROM merge_candidates"))
    op.execute(sa.text("DELETE FROM customers WHERE line_user_id IS NULL"))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.alter_column('line_user_id',
               existing_type=sa.VARCHAR(length=64),
               nullable=False)
        batch_op.drop_column('name_kana')

    op.drop_table('order_items')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_customer_id_ordered_at')

    op.drop_table('orders')
    with op.batch_alter_table('merge_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merge_candidates_other_customer_id'))

    op.drop_table('merge_candidates')
    with op.batch_alter_table('customer_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_identities_customer_id'))

    op.drop_table('customer_identities')


# Normalisation as kizuna.storage.identity_values did it at this revision; written out, not
# imported, so this migration stays what it was. Registration stored e-mails syntax-checked and
# phones as E.164 already: this only makes sure.
def _email(value):
    text = unicodedata.normalize("NFKC", value).strip().lower()
    return text if "@" in text and len(text) <= 254 else None


def _phone(value):
    try:
        number = phonenumbers.parse(unicodedata.normalize("NFKC", value).strip(), "JP")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _backfill_identities() -> None:
    """Every customer's LINE user id (unique already: one statement), then the e-mail and phone
    registration stored. Two customers who gave the same e-mail or phone: the first (lowest id)
    keeps it as an identity and the pair becomes a merge candidate, never merged here."""
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    identities = sa.table(
        'customer_identities', sa.column('customer_id', sa.Integer), sa.column('kind', sa.String),
        sa.column('value', sa.String), sa.column('created_at', kizuna.storage.types.UTCDateTime(timezone=True)),
    )
    candidates = sa.table(
        'merge_candidates', sa.column('customer_id', sa.Integer), sa.column('other_customer_id', sa.Integer),
        sa.column('kind', sa.String), sa.column('value', sa.String), sa.column('source', sa.String),
        sa.column('status', sa.String), sa.column('created_at', kizuna.storage.types.UTCDateTime(timezone=True)),
    )
    customers = sa.table('customers', sa.column('id', sa.Integer), sa.column('line_user_id', sa.String),
                         sa.column('email', sa.String), sa.column('phone', sa.String))
    bind.execute(identities.insert().from_select(
        ['customer_id', 'kind', 'value', 'created_at'],
        sa.select(customers.c.id, sa.literal('line_user_id'), customers.c.line_user_id, sa.literal(now, identities.c.created_at.type))
        .where(customers.c.line_user_id.is_not(None)),
    ))
    holders: dict[tuple[str, str], int] = {}
    new_identities, new_candidates = [], []
    rows = bind.execute(
        sa.select(customers.c.id, customers.c.email, customers.c.phone)
        .where(sa.or_(customers.c.email.is_not(None), customers.c.phone.is_not(None))).order_by(customers.c.id)
    )
    for customer_id, email, phone in rows:
        for kind, value in (('email', email and _email(email)), ('phone', phone and _phone(phone))):
            if not value:
                continue
            holder = holders.setdefault((kind, value), customer_id)
            if holder == customer_id:
                new_identities.append({'customer_id': customer_id, 'kind': kind, 'value': value, 'created_at': now})
            else:
                new_candidates.append({'customer_id': holder, 'other_customer_id': customer_id, 'kind': kind, 'value': value,
                                       'source': 'backfill', 'status': 'pending', 'created_at': now})
    # A pair matched by both e-mail and phone is one candidate (the first kind found).
    pairs = {}
    for row in new_candidates:
        pairs.setdefault((row['customer_id'], row['other_customer_id']), row)
    if new_identities:
        bind.execute(identities.insert(), new_identities)
    if pairs:
        bind.execute(candidates.insert(), list(pairs.values()))
