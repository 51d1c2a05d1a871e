"""Path and query parameters shared by the routes, bounded so bad input is a 422."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import psycopg
import sqlalchemy as sa
from fastapi import Path, Query

from isthmus.api.models import MAX_NAME, NAME_PATTERN
from isthmus.state.models import INT8_MAX

MAX_LIMIT = 1000

JobName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME,
        pattern=NAME_PATTERN,
        description="the job's name (or its id)",
    ),
]
ItemId = Annotated[UUID, Path(description="a UUID")]
EntityFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN, description="an entity name"),
]
JobFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN, description="a job's name"),
]


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"at most this many (1-{MAX_LIMIT})")]


EntityPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN, description="an entity name"),
]
LegacyId = Annotated[
    int, Path(ge=-INT8_MAX - 1, le=INT8_MAX, description="the legacy integer key (int8)")
]
ReportId = Annotated[
    str,
    Path(
        pattern=r"^(latest|[0-9a-fA-F-]{4,36})$",
        description="a report's ID, a validation run's ID, a unique prefix of either, or "
        "'latest' (the newest run)",
    ),
]


def psycopg_of(conn: sa.Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a pooled SQLAlchemy one, for library functions that
    take psycopg's (it goes back to the pool, rolled back, with ``conn``)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw
