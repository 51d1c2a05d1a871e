"""Alembic environment of the state schema, driven from Python by ``isthmus.state.schema``.

The caller passes, in ``Config.attributes``: ``connection`` (a SQLAlchemy Connection,
usually inside the caller's transaction, which then holds the whole upgrade) and
``state_schema`` (the config's ``target.state_schema``). The version table lives in that
schema, so two state schemas in one database are versioned apart.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

config = context.config
connection = config.attributes.get("connection")
schema = config.attributes.get("state_schema", "isthmus")

if not isinstance(connection, Connection):
    raise RuntimeError(
        "the isthmus state migrations run through isthmus.state.schema.upgrade_state_schema "
        "(or `isthmus init`), which passes a connection"
    )

context.configure(
    connection=connection,
    target_metadata=None,
    version_table_schema=schema,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
