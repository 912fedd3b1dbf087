"""Datasets live: versions (each a snapshot a job reads whole), sources they are pulled from
and the pulls made, demands for data the catalog lacks, and objections. Every dataset
registered before becomes version 1, in the directory it already has.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("quality_rules", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("versions", sa.JSON(), nullable=True))
    versions = op.create_table(
        "dataset_versions",
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("directory", sa.String(length=200), nullable=False),
        sa.Column("partitions", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.Column("quality_status", sa.String(length=16), nullable=False),
        sa.Column("revisions", sa.String(length=200), nullable=True),
        sa.Column("superseded_at", sa.DateTime(), nullable=True),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"]),
        sa.PrimaryKeyConstraint("dataset", "version"),
    )
    op.create_table(
        "dataset_sources",
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("password_ref", sa.String(length=500), nullable=True),
        sa.Column("table", sa.String(length=200), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("next_run_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"]),
        sa.PrimaryKeyConstraint("dataset"),
    )
    op.create_table(
        "dataset_refreshes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("runner", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dataset_refreshes_dataset", "dataset_refreshes", ["dataset", "id"])
    op.create_table(
        "demands",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=True),
        sa.Column("columns", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(length=32), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answer_dataset", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["operator_id"], ["principals.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["principals.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_demands_status", "demands", ["status"])
    op.create_table(
        "objections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("raised_by", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["raised_by"], ["principals.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_objections_status", "objections", ["status"])
    _first_versions(versions)


def _first_versions(versions: sa.Table) -> None:
    datasets = sa.table(
        "datasets",
        sa.column("name", sa.String()),
        sa.column("partitions", sa.JSON()),
        sa.column("columns", sa.JSON()),
        sa.column("row_count", sa.BigInteger()),
        sa.column("created_at", sa.DateTime()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            datasets.c.name,
            datasets.c.partitions,
            datasets.c.columns,
            datasets.c.row_count,
            datasets.c.created_at,
        )
    ).all()
    if rows:
        op.bulk_insert(
            versions,
            [
                {
                    "dataset": r.name,
                    "version": 1,
                    "mode": "initial",
                    "source": "upload",
                    "directory": r.name,
                    "partitions": r.partitions,
                    "columns": r.columns,
                    "row_count": r.row_count,
                    "created_at": r.created_at,
                    "created_by": None,
                    "quality": None,
                    "quality_status": "unchecked",
                }
                for r in rows
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_objections_status", table_name="objections")
    op.drop_table("objections")
    op.drop_index("ix_demands_status", table_name="demands")
    op.drop_table("demands")
    op.drop_index("ix_dataset_refreshes_dataset", table_name="dataset_refreshes")
    op.drop_table("dataset_refreshes")
    op.drop_table("dataset_sources")
    op.drop_table("dataset_versions")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("versions")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("quality_rules")
        batch.drop_column("version")
