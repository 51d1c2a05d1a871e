"""The delete-capturing trigger writes as the state schema's owner.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

``record_target_deletion()`` (0003) runs as whoever deletes from a target table: when the
state schema is owned by a role of its own, the application's own DELETEs failed ("permission
denied for schema"). It is now ``SECURITY DEFINER`` with a fixed ``search_path`` and writes
only to its own schema's ``target_deletions`` (no longer to whichever schema its first
argument names). A trigger function cannot be called but as a trigger, and only roles that may
use the state schema can put it on a table. Frozen like 0001.
"""

from __future__ import annotations

from alembic import context, op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def state_schema() -> str:
    return str(context.config.attributes["state_schema"])


def upgrade() -> None:
    s = state_schema()
    # TG_ARGV: the state schema (kept for the triggers 0003 put on), the entity, the key column
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION "{s}".record_target_deletion() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            EXECUTE format(
                'INSERT INTO %I.target_deletions (entity_type, target_key)'
                ' SELECT %L, %I FROM isthmus_gone',
                '{s}', TG_ARGV[1], TG_ARGV[2]);
            RETURN NULL;
        END
        $$
        """  # noqa: S608  (the state schema name is checked: a plain identifier)
    )


def downgrade() -> None:
    s = state_schema()
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
        """  # noqa: S608
    )
