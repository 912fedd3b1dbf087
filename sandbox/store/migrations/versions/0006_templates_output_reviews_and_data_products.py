"""The date each dataset version describes; templates reviewed by the departments whose data they read, releases held for people to
check, and the data products operators sell (their scenarios' caps, customers' keys), with
where each job came from.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The date each version's data describes (数据截至).
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("as_of", sa.String(length=10), nullable=True))
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("as_of", sa.String(length=10), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("template_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("template_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("product_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("product_key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("price_fen", sa.BigInteger(), nullable=True))
        batch.create_index("ix_jobs_product_id", ["product_id"])
    op.create_table(
        "templates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["operator_id"], ["principals.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operator_id", "name"),
    )
    op.create_index("ix_templates_operator_id", "templates", ["operator_id"])
    op.create_table(
        "template_versions",
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("params_schema", sa.JSON(), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("reviewers", sa.JSON(), nullable=False),
        sa.Column("reviews", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["template_id"], ["templates.id"]),
        sa.PrimaryKeyConstraint("template_id", "version"),
    )
    op.create_index("ix_template_versions_status", "template_versions", ["status"])
    op.create_table(
        "output_reviews",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("release_index", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("held", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_output_reviews_job_id", "output_reviews", ["job_id"])
    op.create_index("ix_output_reviews_status", "output_reviews", ["status"])
    op.create_table(
        "product_caps",
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("max_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("scenario"),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("purpose_class", sa.String(length=32), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("trial_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("trial_until", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["operator_id"], ["principals.id"]),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"]),
        sa.ForeignKeyConstraint(["template_id"], ["templates.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_products_operator_id", "products", ["operator_id"])
    op.create_index("ix_products_scenario", "products", ["scenario"])
    op.create_table(
        "product_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=200), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_product_keys_product_id", "product_keys", ["product_id"])


def downgrade() -> None:
    for table in ("product_keys", "products", "product_caps", "output_reviews"):
        op.drop_table(table)
    op.drop_table("template_versions")
    op.drop_table("templates")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_product_id")
        for column in ("price_fen", "product_key_id", "product_id", "template_version"):
            batch.drop_column(column)
        batch.drop_column("template_id")
    for table in ("dataset_versions", "datasets"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("as_of")
