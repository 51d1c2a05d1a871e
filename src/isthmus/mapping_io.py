"""``mappings import FILE`` and ``mappings export FILE``: the ID map as CSV.

File format: UTF-8 CSV, one mapping a line, ``entity_type,legacy_id,uuid_id``,
with that header line optional on import (export always writes it). Fields are
stripped of surrounding spaces; a UUID may be written in any form ``uuid.UUID``
accepts. Blank lines are skipped.

Import is all or nothing, in one transaction: the file is parsed while it
streams into a temporary table (binary COPY); any bad line, any legacy ID or
UUID given twice with different partners, or any mapping that contradicts one
already in the table rejects the whole file with one line naming the file, up
to five example lines and the count. Identical lines and mappings already
present are not errors: importing the same file twice is a no-op. New mappings
get ``validation_status`` ``pending``, no checksum, ``migration_batch``
``import:<file name>:<UTC time>`` and metadata ``{"source": "import"}``.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format
from psycopg.rows import tuple_row

from isthmus.dialects.pgconn import connect, translated
from isthmus.errors import UsageError
from isthmus.mapping import Connection, table
from isthmus.mapping_conflicts import MAX_EXAMPLES, STAGE, check_existing, report_conflicts
from isthmus.urls import DatabaseURL, parse_url
from isthmus.uuids import uuid7_batch_prefix

HEADER = ("entity_type", "legacy_id", "uuid_id")
_INT8_MIN, _INT8_MAX = -(1 << 63), (1 << 63) - 1


class BadMappingFile(UsageError):
    """A mapping file has malformed lines; nothing was imported."""


@dataclass(frozen=True)
class ImportResult:
    """What an import did. ``lines == new + already_present + repeated``."""

    path: str
    lines: int  # data lines read
    new: int  # mappings added to the table
    already_present: int  # lines whose mapping was already in the table
    repeated: int  # lines repeating an earlier line of the file (not otherwise counted)
    batch: str  # migration_batch of the new mappings
    seconds: float


class _RawUUIDBinaryDumper(Dumper):
    """Sends 16 bytes as a binary uuid: the file's UUID text is checked and turned into
    bytes by ``bytes.fromhex``, five times faster than building ``uuid.UUID`` objects."""

    oid = psycopg.postgres.types["uuid"].oid
    format = Format.BINARY

    def dump(self, obj: Buffer) -> Buffer:
        return obj


class _RawUUID(bytes):
    """Only a key to register the dumper on one cursor; the values sent are plain bytes."""


def import_mappings(
    target: Connection | DatabaseURL | str,
    schema: str,
    path: str | os.PathLike[str],
    *,
    entity_tables: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> ImportResult:
    """Import a mapping CSV into ``schema``'s mapping table, all or nothing.

    ``target``: a connection (the import commits, or becomes a savepoint of the
    caller's open transaction) or a target database URL. ``entity_tables``: the
    configured entities, ``{entity: (source_table, target_table)}``; when given,
    lines naming another entity are bad lines, and new mappings get those tables.
    """
    if isinstance(target, psycopg.Connection):
        return _import(target, schema, Path(path), entity_tables)
    url = parse_url(target, where="target.url") if isinstance(target, str) else target
    with connect(url) as conn:
        return _import(conn, schema, Path(path), entity_tables)


def _import(
    conn: Connection,
    schema: str,
    path: Path,
    entity_tables: Mapping[str, tuple[str | None, str | None]] | None,
) -> ImportResult:
    started = time.perf_counter()
    batch = f"import:{path.name}:{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    stage = sql.Identifier(STAGE)
    with translated(), conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SET LOCAL work_mem = '256MB'")  # the checks hash the whole file
        cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (line int8, entity_type text, legacy_id int8, uuid_id uuid)"
                " ON COMMIT DROP"
            ).format(stage)
        )
        cur.adapters.register_dumper(_RawUUID, _RawUUIDBinaryDumper)
        with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(stage)) as copy:
            copy.set_types(["int8", "text", "int8", "uuid"])
            lines, entities = _stream_rows(path, copy, entity_tables)
        if not lines:
            return ImportResult(str(path), 0, 0, 0, 0, batch, time.perf_counter() - started)
        # Writers wait until the import commits; other imports too.
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table(schema)))
        already = check_existing(cur, schema, path, entities)
        new: int | None = 0
        if already < lines:
            skip = already > 0
            new = _insert(cur, schema, batch, entity_tables, skip_present=skip, dedupe=False)
            if new is None:  # the file repeats itself: find out how
                report_conflicts(cur, schema, path, against_table=False)
                new = _insert(cur, schema, batch, entity_tables, skip_present=skip, dedupe=True)
        assert new is not None
    return ImportResult(
        str(path), lines, new, already, lines - new - already, batch, time.perf_counter() - started
    )


def _stream_rows(
    path: Path,
    copy: psycopg.Copy,
    entity_tables: Mapping[str, tuple[str | None, str | None]] | None,
) -> tuple[int, set[str]]:
    """Parse ``path`` into ``copy``; returns (data lines, entities). Raises BadMappingFile."""
    errors: list[str] = []
    bad = 0
    lines = 0
    entities: set[str] = set()
    write = copy.write_row
    for line, fields in _read_csv(path):
        problem = None
        if len(fields) != 3:
            problem = f"expected 3 fields (entity_type,legacy_id,uuid_id), got {len(fields)}"
        else:
            entity, legacy_text, uuid_text = fields
            entity, legacy_text, uuid_text = entity.strip(), legacy_text.strip(), uuid_text.strip()
            legacy_id = _parse_legacy_id(legacy_text)
            raw_uuid = _parse_uuid(uuid_text)
            if not entity or "\x00" in entity:
                problem = "entity_type is empty" if not entity else "entity_type contains NUL"
            elif entity_tables is not None and entity not in entity_tables:
                known = ", ".join(sorted(entity_tables)) or "none"
                problem = f"unknown entity_type {entity!r} (configured: {known})"
            elif legacy_id is None:
                problem = f"legacy_id {legacy_text!r} is not a 64-bit integer"
            elif raw_uuid is None:
                problem = f"uuid_id {uuid_text!r} is not a UUID"
            elif not bad:
                lines += 1
                entities.add(entity)
                write((line, entity, legacy_id, raw_uuid))
                continue
            else:
                continue
        bad += 1
        if len(errors) < MAX_EXAMPLES:
            errors.append(f"line {line}: {problem}")
    if bad:
        more = f" ({bad} bad lines in all)" if bad > len(errors) else ""
        raise BadMappingFile(f"{path}: nothing imported: {'; '.join(errors)}{more}")
    return lines, entities


def _read_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each record; blank lines and the header skipped."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the mapping file: {exc.strerror}") from exc
    with handle:
        reader = csv.reader(handle, strict=True)
        first = True
        line = 1
        try:
            for fields in reader:
                if fields:
                    if first and tuple(f.strip().lower() for f in fields) == HEADER:
                        pass
                    else:
                        yield line, fields
                    first = False
                line = reader.line_num + 1  # where the next record starts
        except csv.Error as exc:
            raise BadMappingFile(f"{path}: nothing imported: line {line}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise BadMappingFile(
                f"{path}: nothing imported: not UTF-8 near line {reader.line_num + 1}"
            ) from exc


def _parse_legacy_id(text: str) -> int | None:
    if not text.isascii() or "_" in text:  # int() takes "1_000" and "١٢" too: not integers here
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if _INT8_MIN <= value <= _INT8_MAX else None


def _parse_uuid(text: str) -> bytes | None:
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        try:
            raw = bytes.fromhex(text.replace("-", ""))
        except ValueError:
            return None
        return raw if len(raw) == 16 else None
    try:  # other spellings: 32 hex digits, braces, urn:uuid:
        return UUID(text).bytes
    except ValueError:
        return None


def _insert(
    cur: psycopg.Cursor[Any],
    schema: str,
    batch: str,
    entity_tables: Mapping[str, tuple[str | None, str | None]] | None,
    *,
    skip_present: bool,
    dedupe: bool,
) -> int | None:
    """Insert the staged mappings; returns how many went in.

    A plain INSERT, not ON CONFLICT DO NOTHING: the table is locked, and the
    speculative insertion of ON CONFLICT nearly doubles the time for 1.2M rows.
    Without ``dedupe``, a line repeating a legacy ID or a UUID of the file makes
    it fail: the savepoint is undone and it returns None, and the caller looks
    closer. ``skip_present``: leave out lines already in the table.
    """
    tables = dict(entity_tables or {})
    names = sorted(tables)
    stage = sql.Identifier(STAGE)
    rows = (
        sql.SQL(
            "(SELECT DISTINCT ON (entity_type, legacy_id) * FROM {} ORDER BY entity_type, legacy_id)"
        ).format(stage)
        if dedupe
        else stage
    )
    where = (
        sql.SQL(
            "WHERE NOT EXISTS (SELECT 1 FROM {} m"
            " WHERE m.entity_type = s.entity_type AND m.legacy_id = s.legacy_id)"
        ).format(table(schema))
        if skip_present
        else sql.SQL("")
    )
    # Keys counting up from a fresh uuid7 prefix in (entity, legacy_id) order, so
    # that the primary-key index takes the rows at its right edge.
    query = sql.SQL(
        """
        INSERT INTO {table} (id, entity_type, legacy_id, uuid_id, migration_batch,
                             validation_status, source_table, target_table, checksum, metadata)
        SELECT (%(prefix)s || lpad(to_hex(row_number() OVER (ORDER BY s.entity_type, s.legacy_id)),
                                   8, '0'))::uuid,
               s.entity_type, s.legacy_id, s.uuid_id, %(batch)s, 'pending',
               t.source_table, t.target_table, NULL, %(metadata)s::jsonb
        FROM {rows} s
        LEFT JOIN unnest(%(names)s::text[], %(sources)s::text[], %(targets)s::text[])
             AS t(entity_type, source_table, target_table) ON t.entity_type = s.entity_type
        {where}
        ORDER BY s.entity_type, s.legacy_id
        """
    ).format(table=table(schema), rows=rows, where=where)
    params = {
        "prefix": uuid7_batch_prefix(),
        "batch": batch,
        "metadata": json.dumps({"source": "import"}),
        "names": names,
        "sources": [tables[n][0] for n in names],
        "targets": [tables[n][1] for n in names],
    }
    if dedupe:
        cur.execute(query, params)
        return cur.rowcount
    try:
        with cur.connection.transaction():
            cur.execute(query, params)
            return cur.rowcount
    except psycopg.errors.UniqueViolation:
        return None


def export_mappings(
    conn: Connection, schema: str, path: str | os.PathLike[str], entity: str | None = None
) -> int:
    """Write the mappings (of one entity, or all) as CSV with a header; returns the row count.

    Rows are ordered by entity and legacy ID; the file appears only when complete.
    """
    target = Path(path)
    where: sql.Composable = sql.SQL("")
    if entity is not None:
        where = sql.SQL("WHERE entity_type = {}").format(sql.Literal(entity))
    query = sql.SQL(
        "COPY (SELECT entity_type, legacy_id, uuid_id FROM {table} {where}"
        " ORDER BY entity_type, legacy_id) TO STDOUT (FORMAT CSV, HEADER)"
    ).format(table=table(schema), where=where)
    partial = target.with_name(target.name + ".partial")
    encoding = conn.info.encoding
    decoder = None if encoding == "utf-8" else codecs.getincrementaldecoder(encoding)()
    try:
        with translated(), partial.open("wb") as out, conn.cursor() as cur:
            with cur.copy(query) as copy:
                for chunk in copy:
                    data = bytes(chunk)
                    out.write(data if decoder is None else decoder.decode(data).encode("utf-8"))
            rows = cur.rowcount
        partial.replace(target)
    except OSError as exc:
        raise UsageError(f"{target}: cannot write the mapping file: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return rows
