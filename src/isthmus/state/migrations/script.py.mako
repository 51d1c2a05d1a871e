"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Write the operations out explicitly (never from the current metadata), read the state
schema's name with ``state_schema()``, and update tables.py to match: the drift test
compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | None = None
depends_on: str | None = None


def state_schema() -> str:
    return str(context.config.attributes["state_schema"])


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
