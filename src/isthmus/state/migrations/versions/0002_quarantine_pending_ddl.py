"""Quarantined rows (bad rows isolated by migrate) and post-load DDL (indexes, FKs).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Two tables beyond the specification's five: ``quarantined_rows`` lists every source row the
target refused or whose parent is missing, with its key and reason, so that nothing is
dropped silently; ``pending_ddl`` holds the indexes and constraints that ``schema --apply``
defers until the bulk load of a fresh target is over. Frozen like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def state_schema() -> str:
    return str(context.config.attributes["state_schema"])


def upgrade() -> None:
    s = state_schema()
    op.create_table(
        "quarantined_rows",
        sa.Column(
            "id",
            pg.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("source_table", sa.Text, nullable=False),
        sa.Column("legacy_key", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("column_name", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("row_data", pg.JSONB, nullable=True),
        sa.Column(
            "checkpoint_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{s}.migration_checkpoints.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.UniqueConstraint("entity_type", "legacy_key", name="uq_quarantine_entity_key"),
        sa.CheckConstraint(
            "kind IN ('orphan', 'rejected', 'unreadable')", name="ck_quarantine_kind"
        ),
        sa.CheckConstraint("reason <> ''", name="ck_quarantine_reason_required"),
        sa.CheckConstraint(
            "NOT resolved OR resolved_at IS NOT NULL", name="ck_quarantine_resolved_at"
        ),
        schema=s,
    )
    op.create_index(
        "idx_quarantine_open", "quarantined_rows", ["resolved", "entity_type"], schema=s
    )
    op.create_table(
        "pending_ddl",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("target_table", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("depends_on", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("name", name="uq_pending_ddl_name"),
        sa.CheckConstraint(
            "kind IN ('primary_key', 'unique', 'index', 'foreign_key')", name="ck_pending_ddl_kind"
        ),
        schema=s,
    )


def downgrade() -> None:
    s = state_schema()
    op.drop_table("pending_ddl", schema=s)
    op.drop_table("quarantined_rows", schema=s)
