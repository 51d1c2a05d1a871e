"""The synthetic legacy dental database of the demo and the benchmark, and its UUID-keyed target.

``generate_legacy`` writes offices → profiles → doctors → patients → orders → products
(each child holding an integer FK to its parent) into SQLite, PostgreSQL or MariaDB/MySQL:
names with accents, NULLs next to empty strings, text with tabs, newlines, quotes and
backslashes, exact decimals, timestamps with microseconds, gaps in the ids. The same
``scale`` and ``seed`` always give the same rows. ``create_target_schema`` builds the
matching PostgreSQL target where every key is a UUID.

The tables are declared in ``demo_schema``, the rows come from ``demo_rows``, and
``demo_writers`` streams them into each database.
"""

from __future__ import annotations

from isthmus import demo_rows, demo_writers
from isthmus.demo_schema import TABLES, target_ddl
from isthmus.demo_writers import Progress
from isthmus.dialects import pgconn
from isthmus.errors import UsageError
from isthmus.urls import DatabaseURL, parse_url

DEMO_TABLES: tuple[str, ...] = tuple(t.name for t in TABLES)  # parents first
_CHILD_TABLES = DEMO_TABLES[1:]


def expected_counts(scale: int) -> dict[str, int]:
    """Rows per table that ``generate_legacy(scale=scale)`` writes (1,209 per office)."""
    return {name: per * scale for name, per in demo_rows.PER_OFFICE.items()}


def generate_legacy(
    url: DatabaseURL | str,
    *,
    scale: int,
    seed: int = 42,
    foreign_keys: bool = True,
    orphans: int = 0,
    replace: bool = False,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Create the six demo tables in ``url`` and fill them with ``scale`` offices of data.

    ``orphans`` rows, spread over the child tables, get a foreign key pointing at a parent
    id that does not exist; only a database without FK constraints can hold them.
    Existing demo tables are an error unless ``replace``. ``progress(table, rows)`` is
    called after each chunk with the rows just written. Returns the rows per table.
    """
    if isinstance(url, str):
        url = parse_url(url)
    if scale < 1:
        raise UsageError(f"demo scale must be at least 1 office, got {scale}")
    if orphans and foreign_keys:
        raise UsageError(
            f"orphans={orphans} needs foreign_keys=False: FK constraints refuse rows whose parent does not exist"
        )
    chunks = demo_rows.generate(scale, seed, orphans=_orphan_positions(scale, orphans))
    options = {"foreign_keys": foreign_keys, "replace": replace, "progress": progress}
    if url.dialect == "sqlite":
        return demo_writers.write_sqlite(url, chunks, **options)  # type: ignore[arg-type]
    if url.dialect == "mysql":
        return demo_writers.write_mysql(url, chunks, **options)  # type: ignore[arg-type]
    return demo_writers.write_postgresql(url, chunks, **options)  # type: ignore[arg-type]


def create_target_schema(
    conninfo_or_url: DatabaseURL | str,
    *,
    schema: str = "public",
    foreign_keys: bool = True,
    timestamp_type: str = "timestamptz",
    replace: bool = False,
) -> None:
    """Create the UUID-keyed PostgreSQL target of the demo tables in ``schema``.

    Every ``id`` is ``uuid PRIMARY KEY`` and every FK column a ``uuid NOT NULL`` referencing
    its parent (the constraint only with ``foreign_keys``), indexed; the other columns keep
    their types (text, numeric, date, boolean, double precision, enum-ish text with a CHECK),
    timestamps become ``timestamp_type``: ``timestamptz`` or ``timestamp``.
    """
    if timestamp_type not in ("timestamptz", "timestamp"):
        raise UsageError(
            f"timestamp_type must be 'timestamptz' or 'timestamp', got {timestamp_type!r}"
        )
    with demo_writers.pg_connection(conninfo_or_url) as conn, pgconn.translated():
        existing = demo_writers.pg_existing(conn, schema)
        if existing and not replace:
            raise UsageError(
                f"table {schema}.{existing[0]} already exists in the target;"
                " pass replace=True to recreate the demo tables"
            )
        for name in reversed(DEMO_TABLES):
            conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{name}"')
        ddl = target_ddl(schema, foreign_keys=foreign_keys, timestamp_type=timestamp_type)
        for statement in ddl:
            conn.execute(statement)


def _orphan_positions(scale: int, orphans: int) -> dict[str, frozenset[int]]:
    """Spread ``orphans`` round-robin over the child tables, evenly within each table."""
    if orphans < 0:
        raise UsageError(f"orphans must be 0 or more, got {orphans}")
    counts = expected_counts(scale)
    limit = len(_CHILD_TABLES) * min(counts[t] for t in _CHILD_TABLES)
    if orphans > limit:
        raise UsageError(
            f"orphans={orphans} is more than the demo can plant at scale {scale} (at most {limit})"
        )
    positions = {}
    for i, table in enumerate(_CHILD_TABLES):
        planted = orphans // len(_CHILD_TABLES) + (1 if i < orphans % len(_CHILD_TABLES) else 0)
        n = counts[table]
        positions[table] = frozenset(
            (j * n) // planted + n // (2 * planted) for j in range(planted)
        )
    return positions
