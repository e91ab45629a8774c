"""customer merges: an admin merges two customers who are one person (a merge candidate); the
merged row stays, pointing at the one kept (customers.merged_into_id), and customer_merges keeps
what moved, for an undo within 7 days

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 13:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import kizuna.storage.types
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('customer_merges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('merged_customer_id', sa.Integer(), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=True),
    sa.Column('moved', JSON, nullable=False),
    sa.Column('filled', JSON, nullable=False),
    sa.Column('merged_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('merged_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('undone_at', kizuna.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('undone_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    sa.ForeignKeyConstraint(['candidate_id'], ['merge_candidates.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['merged_customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_merges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_merges_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_merges_merged_customer_id'), ['merged_customer_id'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_customers_merged_into_id', 'customers', ['merged_into_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_constraint('fk_customers_merged_into_id', type_='foreignkey')
        batch_op.drop_column('merged_into_id')

    with op.batch_alter_table('customer_merges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_merges_merged_customer_id'))
        batch_op.drop_index(batch_op.f('ix_customer_merges_customer_id'))

    op.drop_table('customer_merges')
