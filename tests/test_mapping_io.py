"""``mappings import`` / ``mappings export``: CSV round trips, all-or-nothing rejection."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from isthmus import mapping
from isthmus.dialects.pgconn import conninfo
from isthmus.errors import MappingConflict, UsageError
from isthmus.mapping_io import BadMappingFile, export_mappings, import_mappings
from isthmus.urls import DatabaseURL
from test_mapping_support import (
    CountingConnection,
    count_rows,
    counting_connect,
    create_mapping_schema,
    drop_schema,
    truncate,
)

U = [uuid.UUID(int=(i + 1) * 0x1111_1111_1111_1111_1111) for i in range(20)]


@pytest.fixture(scope="module")
def schema_url(pg_url: DatabaseURL) -> Iterator[tuple[DatabaseURL, str]]:
    schema = create_mapping_schema(pg_url, "mapio")
    yield pg_url, schema
    drop_schema(pg_url, schema)


@pytest.fixture
def schema(schema_url: tuple[DatabaseURL, str]) -> str:
    return schema_url[1]


@pytest.fixture
def conn(schema_url: tuple[DatabaseURL, str]) -> Iterator[CountingConnection]:
    with counting_connect(schema_url[0]) as connection:
        truncate(connection, schema_url[1])
        yield connection


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def rows(conn: psycopg.Connection[Any], schema: str) -> set[tuple[str, int, UUID]]:
    query = sql.SQL("SELECT entity_type, legacy_id, uuid_id FROM {}").format(
        sql.Identifier(schema, "legacy_id_mappings")
    )
    found = conn.execute(query).fetchall()
    conn.rollback()
    return {(str(e), int(i), UUID(str(u))) for e, i, u in found}


def test_import_with_header_sets_the_documented_fields(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        f"entity_type,legacy_id,uuid_id\npatients,1,{U[0]}\npatients,2,{U[1]}\noffices,1,{U[2]}\n",
    )
    result = import_mappings(conn, schema, path)
    assert (result.lines, result.new, result.already_present, result.repeated) == (3, 3, 0, 0)
    assert re.fullmatch(r"import:m\.csv:\d{8}T\d{6}Z", result.batch)
    assert rows(conn, schema) == {
        ("patients", 1, U[0]),
        ("patients", 2, U[1]),
        ("offices", 1, U[2]),
    }
    record = mapping.lookup_record(conn, schema, "patients", 2)
    assert record is not None
    assert (record.validation_status, record.checksum, record.migration_batch) == (
        "pending",
        None,
        result.batch,
    )
    assert record.metadata == {"source": "import"}
    assert (record.source_table, record.target_table) == (None, None)


def test_import_without_header_crlf_bom_blank_lines_and_uuid_spellings(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    text = (
        "\ufeffdoctors,7,"
        + str(U[0]).upper()
        + "\r\n\r\ndoctors, 8 ,"
        + U[1].hex
        + "\r\ndoctors,9,{"
        + str(U[2])
        + "}\r\n"
    )
    result = import_mappings(conn, schema, write(tmp_path, text))
    assert result.new == 3
    assert rows(conn, schema) == {("doctors", 7, U[0]), ("doctors", 8, U[1]), ("doctors", 9, U[2])}


def test_entity_tables_fill_the_table_names_and_reject_other_entities(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    tables = {"patients": ("legacy_patients", "patients"), "orders": (None, "orders")}
    import_mappings(conn, schema, write(tmp_path, f"patients,1,{U[0]}\n"), entity_tables=tables)
    record = mapping.lookup_record(conn, schema, "patients", 1)
    assert record is not None
    assert (record.source_table, record.target_table) == ("legacy_patients", "patients")
    with pytest.raises(
        BadMappingFile, match=r"m\.csv: nothing imported: line 2: unknown entity_type 'patient'"
    ):
        import_mappings(
            conn,
            schema,
            write(tmp_path, f"orders,1,{U[1]}\npatient,2,{U[2]}\n"),
            entity_tables=tables,
        )
    assert count_rows(conn, schema) == 1


def test_reimport_is_a_no_op_and_overlap_adds_only_the_new(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    path = write(tmp_path, f"orders,1,{U[0]}\norders,2,{U[1]}\norders,3,{U[2]}\n")
    import_mappings(conn, schema, path)
    again = import_mappings(conn, schema, path)
    assert (again.new, again.already_present, again.repeated) == (0, 3, 0)
    more = import_mappings(
        conn, schema, write(tmp_path, f"orders,3,{U[2]}\norders,4,{U[3]}\n", "more.csv")
    )
    assert (more.lines, more.new, more.already_present) == (2, 1, 1)
    assert count_rows(conn, schema) == 4


def test_identical_repeated_lines_are_counted_not_rejected(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    text = f"orders,1,{U[0]}\norders,2,{U[1]}\norders,1,{U[0]}\norders,1,{U[0]}\n"
    result = import_mappings(conn, schema, write(tmp_path, text))
    assert (result.lines, result.new, result.already_present, result.repeated) == (4, 2, 0, 2)
    assert count_rows(conn, schema) == 2


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            f"orders,1,{U[1]},extra",
            "line 3: expected 3 fields (entity_type,legacy_id,uuid_id), got 4",
        ),
        ("orders,1", "line 3: expected 3 fields"),
        (f"orders,abc,{U[1]}", "line 3: legacy_id 'abc' is not a 64-bit integer"),
        (f"orders,{2**63},{U[1]}", f"line 3: legacy_id '{2**63}' is not a 64-bit integer"),
        ("orders,5,not-a-uuid", "line 3: uuid_id 'not-a-uuid' is not a UUID"),
        ("orders,5,0123456789abcdef0123456789abcdeg", "line 3: uuid_id"),
        (f",5,{U[1]}", "line 3: entity_type is empty"),
        ('"orders,5', "line 3: unexpected end of data"),
    ],
)
def test_a_bad_line_rejects_the_whole_file_naming_file_and_line(
    conn: CountingConnection, schema: str, tmp_path: Path, line: str, problem: str
) -> None:
    import_mappings(conn, schema, write(tmp_path, f"offices,1,{U[5]}\n", "before.csv"))
    path = write(
        tmp_path, f"entity_type,legacy_id,uuid_id\norders,9,{U[0]}\n{line}\norders,10,{U[2]}\n"
    )
    with pytest.raises(BadMappingFile) as info:
        import_mappings(conn, schema, path)
    message = str(info.value)
    assert message.startswith(f"{path}: nothing imported: ")
    assert problem in message
    assert "\n" not in message
    assert info.value.exit_code == 2
    assert rows(conn, schema) == {("offices", 1, U[5])}


def test_many_bad_lines_show_five_and_the_count(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    text = "".join(f"orders,x{i},{U[0]}\n" for i in range(7))
    with pytest.raises(BadMappingFile) as info:
        import_mappings(conn, schema, write(tmp_path, text))
    message = str(info.value)
    assert message.count("is not a 64-bit integer") == 5
    assert "line 5:" in message and "line 6:" not in message
    assert message.endswith("(7 bad lines in all)")


def test_a_legacy_id_with_two_uuids_in_the_file_is_rejected(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    text = f"orders,1,{U[0]}\norders,2,{U[1]}\norders,1,{U[2]}\norders,3,{U[3]}\n"
    with pytest.raises(MappingConflict) as info:
        import_mappings(conn, schema, write(tmp_path, text))
    message = str(info.value)
    assert f"line 3: orders legacy_id 1 → {U[2]}, but line 1 maps it to {U[0]}" in message
    assert "1 legacy_id(s) with two UUIDs in the file" in message
    assert "m.csv: nothing imported" in message and "\n" not in message
    assert count_rows(conn, schema) == 0


def test_a_uuid_given_to_two_legacy_ids_in_the_file_is_rejected(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    text = f"orders,1,{U[0]}\norders,2,{U[0]}\npatients,2,{U[0]}\n"  # other entity: fine
    with pytest.raises(MappingConflict) as info:
        import_mappings(conn, schema, write(tmp_path, text))
    assert (
        f"line 2: orders uuid_id {U[0]} for legacy_id 2, but line 1 gives it to legacy_id 1"
        in str(info.value)
    )
    assert count_rows(conn, schema) == 0


def test_contradicting_the_table_is_rejected_and_nothing_imported(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    import_mappings(conn, schema, write(tmp_path, f"orders,1,{U[0]}\norders,2,{U[1]}\n", "a.csv"))
    text = f"orders,3,{U[3]}\norders,1,{U[2]}\norders,4,{U[1]}\norders,2,{U[1]}\n"
    with pytest.raises(MappingConflict) as info:
        import_mappings(conn, schema, write(tmp_path, text))
    message = str(info.value)
    assert f"line 2: orders legacy_id 1 is already mapped to {U[0]}, not {U[2]}" in message
    assert f"line 3: orders uuid_id {U[1]} is already mapped to legacy_id 2, not 4" in message
    assert "1 line(s) contradicting a mapped legacy_id" in message
    assert "1 line(s) reusing a mapped uuid_id" in message
    assert rows(conn, schema) == {("orders", 1, U[0]), ("orders", 2, U[1])}


def test_conflicts_show_five_examples_and_the_total(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    text = "".join(f"orders,{i},{uuid.uuid4()}\norders,{i},{uuid.uuid4()}\n" for i in range(8))
    with pytest.raises(MappingConflict) as info:
        import_mappings(conn, schema, write(tmp_path, text))
    message = str(info.value)
    assert "8 legacy_id(s) with two UUIDs in the file" in message
    assert message.count(" → ") == 5


def test_import_by_url_and_missing_file(
    schema_url: tuple[DatabaseURL, str], tmp_path: Path, conn: CountingConnection
) -> None:
    url, schema = schema_url
    assert import_mappings(url, schema, write(tmp_path, f"a,1,{U[0]}\n")).new == 1
    assert import_mappings(url.raw, schema, write(tmp_path, f"a,2,{U[1]}\n")).new == 1
    with pytest.raises(UsageError, match=r"nowhere\.csv: cannot read"):
        import_mappings(url, schema, tmp_path / "nowhere.csv")
    empty = import_mappings(url, schema, write(tmp_path, "entity_type,legacy_id,uuid_id\n"))
    assert (empty.lines, empty.new) == (0, 0)


def test_import_inside_the_callers_transaction_is_a_savepoint(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    conn.execute("SELECT 1")  # the caller has a transaction open
    import_mappings(conn, schema, write(tmp_path, f"a,1,{U[0]}\n"))
    conn.rollback()
    assert count_rows(conn, schema) == 0


def test_export_writes_header_sorted_rows_and_filters_by_entity(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    import_mappings(
        conn, schema, write(tmp_path, f"orders,10,{U[0]}\noffices,2,{U[1]}\norders,9,{U[2]}\n")
    )
    out = tmp_path / "out.csv"
    assert export_mappings(conn, schema, out) == 3
    assert out.read_text() == (
        f"entity_type,legacy_id,uuid_id\noffices,2,{U[1]}\norders,9,{U[2]}\norders,10,{U[0]}\n"
    )
    assert export_mappings(conn, schema, out, entity="orders") == 2
    assert out.read_text().splitlines()[1:] == [f"orders,9,{U[2]}", f"orders,10,{U[0]}"]
    assert export_mappings(conn, schema, out, entity="nobody") == 0
    assert out.read_text() == "entity_type,legacy_id,uuid_id\n"
    assert not (tmp_path / "out.csv.partial").exists()


def test_export_to_an_unwritable_place_is_a_usage_error(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="cannot write the mapping file"):
        export_mappings(conn, schema, tmp_path / "no" / "such" / "dir.csv")


entity_names = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
).filter(lambda s: s == s.strip())
mapping_sets = st.dictionaries(
    st.tuples(entity_names, st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    st.uuids(),
    max_size=30,
).filter(lambda d: len({(e, u) for (e, _), u in d.items()}) == len(d))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mappings=mapping_sets, header=st.booleans())
def test_export_of_an_import_is_the_identity(
    schema_url: tuple[DatabaseURL, str],
    tmp_path_factory: pytest.TempPathFactory,
    mappings: dict[tuple[str, int], UUID],
    header: bool,
) -> None:
    url, schema = schema_url
    folder = tmp_path_factory.mktemp("roundtrip")
    source = folder / "in.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(["entity_type", "legacy_id", "uuid_id"])
        writer.writerows([e, i, str(u)] for (e, i), u in mappings.items())
    with psycopg.connect(conninfo(url)) as conn:
        truncate(conn, schema)
        result = import_mappings(conn, schema, source)
        assert result.new == len(mappings)
        exported = folder / "out.csv"
        assert export_mappings(conn, schema, exported) == len(mappings)
        with exported.open(newline="", encoding="utf-8") as handle:
            back = list(csv.reader(handle))
        assert back[0] == ["entity_type", "legacy_id", "uuid_id"]
        assert {(e, int(i)): UUID(u) for e, i, u in back[1:]} == mappings
        # ...and importing the export into an empty table gives the same export
        truncate(conn, schema)
        assert import_mappings(conn, schema, exported).new == len(mappings)
        again = folder / "again.csv"
        export_mappings(conn, schema, again)
        assert again.read_bytes() == exported.read_bytes()


def test_export_of_awkward_entity_names_is_valid_csv(
    conn: CountingConnection, schema: str, tmp_path: Path
) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([['we,ird "name"', 1, str(U[0])], ["line\nbreak", 2, str(U[1])]])
    import_mappings(conn, schema, write(tmp_path, buffer.getvalue()))
    out = tmp_path / "out.csv"
    export_mappings(conn, schema, out)
    with out.open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1:] == [
            ["line\nbreak", "2", str(U[1])],
            ['we,ird "name"', "1", str(U[0])],
        ]
