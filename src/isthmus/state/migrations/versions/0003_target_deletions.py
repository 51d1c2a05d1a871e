"""Deletions captured in the target, so a cursor diff finds them without a scan.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

``target_deletions`` is written by ``record_target_deletion()``, a statement-level AFTER
DELETE trigger that ``isthmus diff`` puts on the target table of each entity with change
cursors (the legacy source has ``updated_at`` for its changes; a delete leaves no row to
carry one). Frozen like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def state_schema() -> str:
    return str(context.config.attributes["state_schema"])


def upgrade() -> None:
    s = state_schema()
    op.create_table(
        "target_deletions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("target_key", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        schema=s,
    )
    op.create_index(
        "idx_target_deletions_entity", "target_deletions", ["entity_type", "deleted_at"], schema=s
    )
    # TG_ARGV: the state schema, the entity, the target's key column
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION "{s}".record_target_deletion() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE format(
                'INSERT INTO %I.target_deletions (entity_type, target_key)'
                ' SELECT %L, %I FROM isthmus_gone',
                TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]);
            RETURN NULL;
        END
        $$
        """  # noqa: S608  (the state schema name is checked: a plain identifier)
    )


def downgrade() -> None:
    s = state_schema()
    op.execute(f'DROP FUNCTION IF EXISTS "{s}".record_target_deletion() CASCADE')
    op.drop_table("target_deletions", schema=s)
