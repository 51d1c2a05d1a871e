"""The tables of the synthetic legacy dental database, and their DDL per database.

One declaration (``TABLES``) drives the legacy DDL for SQLite, MariaDB/MySQL and
PostgreSQL, and the UUID-keyed PostgreSQL target that ``create_target_schema`` builds.
Legacy types are deliberately of their era: SQLite loose, MariaDB with unsigned
auto-increment keys, tinyint(1) booleans, ENUM and DATETIME(6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "key", "ref", "varchar", "text", "bool", "decimal", "int", "float", "date", "ts", "enum"
]
LegacyDialect = Literal["sqlite", "mysql", "postgresql"]

ORDER_STATUSES = ("draft", "placed", "shipped", "delivered", "cancelled")
PROFILE_ROLES = ("dentist", "hygienist", "assistant", "admin")


@dataclass(frozen=True)
class Col:
    name: str
    kind: Kind
    nullable: bool = False
    length: int | None = None  # varchar length
    precision: tuple[int, int] | None = None  # decimal (precision, scale)
    parent: str | None = None  # ref: the parent table
    values: tuple[str, ...] = ()  # enum values (allowed values of enum-ish text too)
    wide: bool = False  # key/ref: 64-bit in PostgreSQL


@dataclass(frozen=True)
class DemoTable:
    name: str
    columns: tuple[Col, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def ref(self) -> Col | None:
        return next((c for c in self.columns if c.kind == "ref"), None)


def _stamps() -> tuple[Col, Col]:
    return Col("created_at", "ts"), Col("updated_at", "ts")


TABLES: tuple[DemoTable, ...] = (
    DemoTable(
        "offices",
        (
            Col("id", "key"),
            Col("name", "varchar", length=120),
            Col("address", "varchar", length=200),
            Col("city", "varchar", length=80),
            Col("phone", "varchar", length=40),
            Col("timezone", "varchar", length=64),
            Col("is_active", "bool"),
            *_stamps(),
        ),
    ),
    DemoTable(
        "profiles",
        (
            Col("id", "key"),
            Col("office_id", "ref", parent="offices"),
            Col("email", "varchar", length=190),
            Col("first_name", "varchar", length=80),
            Col("last_name", "varchar", length=80),
            Col("role", "varchar", length=20, values=PROFILE_ROLES),
            Col("notes", "text", nullable=True),
            *_stamps(),
        ),
    ),
    DemoTable(
        "doctors",
        (
            Col("id", "key"),
            Col("profile_id", "ref", parent="profiles"),
            Col("license_no", "varchar", length=32),
            Col("specialty", "varchar", length=80),
            Col("hourly_rate", "decimal", precision=(10, 2)),
            *_stamps(),
        ),
    ),
    DemoTable(
        "patients",
        (
            Col("id", "key"),
            Col("doctor_id", "ref", parent="doctors"),
            Col("first_name", "varchar", length=80),
            Col("last_name", "varchar", length=80),
            Col("birth_date", "date", nullable=True),
            Col("email", "varchar", length=190, nullable=True),
            Col("phone", "varchar", length=40),
            Col("balance", "decimal", precision=(12, 2)),
            Col("notes", "text", nullable=True),
            *_stamps(),
        ),
    ),
    DemoTable(
        "orders",
        (
            Col("id", "key", wide=True),
            Col("patient_id", "ref", parent="patients"),
            Col("order_no", "varchar", length=32),
            Col("status", "enum", values=ORDER_STATUSES),
            Col("total", "decimal", precision=(12, 2)),
            Col("placed_at", "ts", nullable=True),
            *_stamps(),
        ),
    ),
    DemoTable(
        "products",
        (
            Col("id", "key", wide=True),
            Col("order_id", "ref", parent="orders", wide=True),
            Col("sku", "varchar", length=40),
            Col("name", "varchar", length=160),
            Col("quantity", "int"),
            Col("unit_price", "decimal", precision=(10, 2)),
            Col("weight_g", "float", nullable=True),
            *_stamps(),
        ),
    ),
)


def quote(dialect: LegacyDialect, name: str) -> str:
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def _legacy_type(dialect: LegacyDialect, col: Col) -> str:
    k = col.kind
    if dialect == "sqlite":
        return {
            "key": "INTEGER PRIMARY KEY",
            "ref": "INTEGER",
            "bool": "BOOLEAN",
            "decimal": "NUMERIC",
            "int": "INTEGER",
            "float": "REAL",
            "date": "DATE",
            "ts": "DATETIME",
        }.get(k, "TEXT")
    if dialect == "mysql":
        if k == "key":
            return "INT UNSIGNED NOT NULL AUTO_INCREMENT"
        if k == "enum":
            return "ENUM(" + ", ".join(f"'{v}'" for v in col.values) + ")"
        if k == "decimal" and col.precision:
            return f"DECIMAL({col.precision[0]},{col.precision[1]})"
        if k == "varchar":
            return f"VARCHAR({col.length})"
        return {
            "ref": "INT UNSIGNED",
            "text": "TEXT",
            "bool": "TINYINT(1)",
            "int": "INT",
            "float": "FLOAT",
            "date": "DATE",
            "ts": "DATETIME(6)",
        }[k]
    if k in ("key", "ref"):
        return ("bigint" if col.wide else "integer") + (" PRIMARY KEY" if k == "key" else "")
    if k == "decimal" and col.precision:
        return f"numeric({col.precision[0]},{col.precision[1]})"
    if k == "varchar":
        return f"varchar({col.length})"
    return {
        "text": "text",
        "bool": "boolean",
        "int": "integer",
        "float": "double precision",
        "date": "date",
        "ts": "timestamp(6)",
        "enum": "varchar(16)",
    }[k]


def legacy_create_table(dialect: LegacyDialect, table: DemoTable, *, foreign_keys: bool) -> str:
    """CREATE TABLE for the legacy side. PostgreSQL and MariaDB get their FK constraints
    after the load (``legacy_constraints``); SQLite can only declare them here."""

    def q(name: str) -> str:
        return quote(dialect, name)

    lines = []
    for col in table.columns:
        null = "" if col.kind == "key" else (" NULL" if col.nullable else " NOT NULL")
        line = f"  {q(col.name)} {_legacy_type(dialect, col)}{null}"
        if dialect == "sqlite" and col.kind == "ref" and foreign_keys:
            line += f" REFERENCES {q(col.parent or '')}({q('id')})"
        lines.append(line)
    if dialect == "mysql":
        lines.append(f"  PRIMARY KEY ({q('id')})")
        tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
    else:
        tail = ""
    return f"CREATE TABLE {q(table.name)} (\n" + ",\n".join(lines) + f"\n){tail}"


def legacy_constraints(
    dialect: LegacyDialect, table: DemoTable, *, foreign_keys: bool
) -> list[str]:
    """The FK index (and FK constraint) of ``table``, built after its rows are in."""
    ref = table.ref
    if ref is None:
        return []

    def q(name: str) -> str:
        return quote(dialect, name)

    index = f"ix_{table.name}_{ref.name}"
    statements = [f"CREATE INDEX {q(index)} ON {q(table.name)} ({q(ref.name)})"]
    if foreign_keys and dialect != "sqlite":
        statements.append(
            f"ALTER TABLE {q(table.name)} ADD CONSTRAINT {q(f'fk_{table.name}_{ref.name}')}"
            f" FOREIGN KEY ({q(ref.name)}) REFERENCES {q(ref.parent or '')} ({q('id')})"
        )
    return statements


def _target_type(col: Col, timestamp_type: str) -> str:
    if col.kind == "enum" or (col.kind == "varchar" and col.values):
        allowed = ", ".join(f"'{v}'" for v in col.values)
        return f"text CHECK ({quote('postgresql', col.name)} IN ({allowed}))"
    if col.kind == "ts":
        return timestamp_type
    if col.kind == "varchar":
        return "text"
    return _legacy_type("postgresql", col)


def target_ddl(
    schema: str, *, foreign_keys: bool = True, timestamp_type: str = "timestamptz"
) -> list[str]:
    """Statements creating the UUID-keyed target tables (and their FK indexes) in ``schema``."""

    def q(name: str) -> str:
        return quote("postgresql", name)

    statements = [f"CREATE SCHEMA IF NOT EXISTS {q(schema)}"]
    for table in TABLES:
        lines = []
        for col in table.columns:
            null = " NULL" if col.nullable else " NOT NULL"
            if col.kind == "key":
                lines.append(f"  {q(col.name)} uuid PRIMARY KEY")
            elif col.kind == "ref":
                refs = (
                    f" REFERENCES {q(schema)}.{q(col.parent or '')} ({q('id')})"
                    if foreign_keys
                    else ""
                )
                lines.append(f"  {q(col.name)} uuid NOT NULL{refs}")
            else:
                lines.append(f"  {q(col.name)} {_target_type(col, timestamp_type)}{null}")
        statements.append(
            f"CREATE TABLE {q(schema)}.{q(table.name)} (\n" + ",\n".join(lines) + "\n)"
        )
        if table.ref is not None:
            statements.append(
                f"CREATE INDEX {q(f'ix_{table.name}_{table.ref.name}')}"
                f" ON {q(schema)}.{q(table.name)} ({q(table.ref.name)})"
            )
    return statements
