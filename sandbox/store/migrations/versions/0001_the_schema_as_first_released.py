"""The schema as first released: every table the service had before migrations.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allowed_revenue",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("period"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("index"),
    )
    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index"),
    )
    op.create_table(
        "ledger_witnesses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("size", "public_key"),
    )
    with op.batch_alter_table("ledger_witnesses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_witnesses_size"), ["size"], unique=False)

    op.create_table(
        "price_caps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("effective_from", sa.DateTime(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "price_schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("effective_from", sa.DateTime(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "principals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("license_no", sa.String(length=100), nullable=True),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("license_valid_to", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "contracts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("required_approvals", sa.JSON(), nullable=False),
        sa.Column("approvals", sa.JSON(), nullable=False),
        sa.Column("bureau_signature", sa.String(length=128), nullable=True),
        sa.Column("operator_signature", sa.String(length=128), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("reserved_fen", sa.BigInteger(), nullable=False),
        sa.Column("spent_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("provider_id", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=2), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("partitions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "prepaid_accounts",
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("reserved_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("operator_id"),
    )
    op.create_table(
        "principal_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("registered_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("principal_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_principal_keys_principal_id"), ["principal_id"], unique=False
        )

    op.create_table(
        "principal_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=32), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("principal_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_principal_tokens_principal_id"), ["principal_id"], unique=False
        )

    op.create_table(
        "contract_versions",
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("required_approvals", sa.JSON(), nullable=False),
        sa.Column("approvals", sa.JSON(), nullable=False),
        sa.Column("bureau_signature", sa.String(length=128), nullable=True),
        sa.Column("operator_signature", sa.String(length=128), nullable=True),
        sa.Column("operator_key_id", sa.String(length=32), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
        ),
        sa.PrimaryKeyConstraint("contract_id", "version"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("contract_version", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("signing_key_id", sa.String(length=64), nullable=True),
        sa.Column("signed_at", sa.String(length=40), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("quote", sa.JSON(), nullable=True),
        sa.Column("quote_fen", sa.BigInteger(), nullable=False),
        sa.Column("charge", sa.JSON(), nullable=True),
        sa.Column("charge_fen", sa.BigInteger(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("disclosure", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["principals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["price_schedules.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operator_id", "idempotency_key"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_contract_created", ["contract_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_operator_finished", ["operator_id", "finished_at"], unique=False
        )

    op.create_table(
        "privacy_budgets",
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("spent_micro", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micro", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
        ),
        sa.PrimaryKeyConstraint("contract_id", "dataset"),
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("pattern", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(), nullable=True),
        sa.Column("reviewed_by", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["principals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flags_contract_created", ["contract_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_flags_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            "ix_flags_operator_created", ["operator_id", "created_at"], unique=False
        )

    op.create_table(
        "job_observations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("shape", sa.String(length=16), nullable=False),
        sa.Column("literals", sa.JSON(), nullable=False),
        sa.Column("literals_key", sa.String(length=16), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("differenced", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_observations_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            "ix_job_observations_operator_created", ["operator_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_job_observations_operator_shape_created",
            ["operator_id", "shape", "created_at"],
            unique=False,
        )

    op.create_table(
        "job_outputs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )
    op.create_table(
        "released_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(length=300), nullable=False),
        sa.Column("contract_id", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("cardinality", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.LargeBinary(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operator_id", "digest"),
    )
    with op.batch_alter_table("released_sets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_released_sets_contract_id"), ["contract_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_released_sets_operator_id"), ["operator_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("released_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_released_sets_operator_id"))
        batch_op.drop_index(batch_op.f("ix_released_sets_contract_id"))

    op.drop_table("released_sets")
    op.drop_table("job_outputs")
    with op.batch_alter_table("job_observations", schema=None) as batch_op:
        batch_op.drop_index("ix_job_observations_operator_shape_created")
        batch_op.drop_index("ix_job_observations_operator_created")
        batch_op.drop_index(batch_op.f("ix_job_observations_job_id"))

    op.drop_table("job_observations")
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_index("ix_flags_operator_created")
        batch_op.drop_index(batch_op.f("ix_flags_job_id"))
        batch_op.drop_index("ix_flags_contract_created")

    op.drop_table("flags")
    op.drop_table("privacy_budgets")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_operator_finished")
        batch_op.drop_index("ix_jobs_contract_created")

    op.drop_table("jobs")
    op.drop_table("contract_versions")
    with op.batch_alter_table("principal_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_principal_tokens_principal_id"))

    op.drop_table("principal_tokens")
    with op.batch_alter_table("principal_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_principal_keys_principal_id"))

    op.drop_table("principal_keys")
    op.drop_table("prepaid_accounts")
    op.drop_table("datasets")
    op.drop_table("contracts")
    op.drop_table("principals")
    op.drop_table("price_schedules")
    op.drop_table("price_caps")
    with op.batch_alter_table("ledger_witnesses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_witnesses_size"))

    op.drop_table("ledger_witnesses")
    op.drop_table("ledger_nodes")
    op.drop_table("ledger_entries")
    op.drop_table("allowed_revenue")
