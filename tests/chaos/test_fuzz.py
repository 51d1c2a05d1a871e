"""Fuzzing with hypothesis: the config parser, cron expressions and the canonical form.

- ``load_config`` on generated TOML files (arbitrary keys, values and nesting, around and
  inside a valid config; arbitrary text; a valid file with random edits) gives a Config or a
  ConfigError of one line naming the file, never another exception.
- ``parse_cron`` on arbitrary text and on cron-like token soup gives a schedule whose next
  run exists, or a UsageError of one line.
- The canonical form: COPY escaping round-trips any bytes (NUL, backslashes, tabs, newlines,
  invalid UTF-8), a text value's field round-trips, a canonical line splits back into its
  fields, every normalizer takes any bytes without an exception and is idempotent (and never
  blows a short field up into a huge one), and numbers (NaN, ±Infinity, -0, huge decimals)
  spelled differently but equal have one canonical form.

Examples per property: ``trials(200, 5000)`` (``ISTHMUS_CHAOS_FULL=1`` for the full run).
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from chaos_support import trials
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from isthmus.canonical import NORMALIZERS, NULL, checksum_line, norm_decimal, norm_float8
from isthmus.config import Config, load_config
from isthmus.copytext import escape, escape_column, to_copy_text, unescape
from isthmus.errors import ConfigError, UsageError
from isthmus.jobs import next_run, parse_cron

pytestmark = pytest.mark.chaos

EXAMPLES = trials(200, 5000)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
COUNTS: dict[str, int] = {}


def count(klass: str) -> None:
    COUNTS[klass] = COUNTS.get(klass, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report() -> Any:
    yield
    for klass, n in sorted(COUNTS.items()):
        print(f"\nhostile-input: fuzz-{klass} {n}/{n} handled")


# -- TOML written by hand (tomllib reads, nothing in the standard library writes) -------------


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


KNOWN_KEYS = [
    "source", "target", "migration", "diff", "retention", "validation", "entities", "url",
    "state_schema", "schema", "batch_size", "uuid", "uuid_namespace", "on_orphan", "chunk_rows",
    "resolution", "sample_conflicts", "cursor_overlap_seconds", "segment_rows", "days",
    "expires_hours", "samples", "sample_rows", "confidence", "source_table", "target_table",
    "key", "target_key", "columns", "exclude", "references", "updated_at", "target_updated_at",
    "soft_delete", "tolerances", "min_rows_per_second", "max_lookup_ms", "query_samples",
]  # fmt: skip
KEYS = st.sampled_from(KNOWN_KEYS) | st.text(max_size=12)
URLS = st.sampled_from(
    [
        "postgresql://127.0.0.1:5432/app",
        "postgresql://u:p%40ss@h:99999/db",
        "mysql://root@127.0.0.1/legacy?driver=nope",
        "sqlite:///legacy.db",
        "embedded://",
        "http://example.com",
        "postgresql://[::1]:5432/x",
        "postgresql://h:notaport/x",
        "${NOPE_NOT_SET}",
        "${NOPE_NOT_SET:-sqlite:///d.db}",
        "",
    ]
)
SCALARS = (
    st.text(max_size=20)
    | URLS
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.times()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)
VALID: dict[str, Any] = {
    "source": {"url": "sqlite:///legacy.db"},
    "target": {"url": "postgresql://127.0.0.1:5432/app", "state_schema": "isthmus"},
    "migration": {"batch_size": 500, "uuid": "uuid7", "on_orphan": "quarantine"},
    "entities": {
        "users": {"columns": {"name": "full_name"}, "references": {"team_id": "teams"}},
        "teams": {},
    },
}


def _path_of(doc: dict[str, Any], where: list[str]) -> dict[str, Any]:
    node = doc
    for key in where:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    return node


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with random keys added, replaced or removed at random depths, or a
    document of random sections."""
    if draw(st.booleans()):
        return draw(st.dictionaries(KEYS, VALUES, max_size=6))
    doc: dict[str, Any] = copy.deepcopy(VALID)  # (edited below: VALID stays as it is)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.lists(st.sampled_from(["source", "target", "migration", "entities",
                                                "users", "teams", "columns", "diff"]),
                              max_size=3))  # fmt: skip
        node = _path_of(doc, where)
        action = draw(st.sampled_from(["set", "delete"]))
        if action == "delete" and node:
            del node[draw(st.sampled_from(sorted(node)))]
        else:
            node[draw(KEYS)] = draw(VALUES)
    return doc


def check_config(path: Path) -> Config | ConfigError:
    try:
        return load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        assert str(path) in message, message
        return exc


@FUZZ
@given(documents())
@example({"source": {"url": "sqlite:///x.db"}, "target": {"url": "postgresql://h/d"},
          "entities": {"a\nb": {"source_table": "t\r\nu"}}})  # fmt: skip
@example({"source": {"url": "sqlite:///x.db"}, "target": {"url": "postgresql://h/d"},
          "migration": {"batch_size": "1\n2"}})  # fmt: skip
@example({"source": {"url": "sqlite:///x.db"}, "target": {"url": "postgresql://h/d"},
          "entities": {"x": {"columns": {"a\nb": "c"}, "references": {"\n": "x"}}}})  # fmt: skip
@example({"source": {"url": "sqlite:///x.db\n"}, "target": {"url": "postgresql://h/d\n"}})
@example({"source": {"url": "${A\nB}"}, "target": {"url": "${NOT_SET_\u00e9}"}})
@example({"\r": {"x": "${NOT_SET_A}"}, "\u2028": 1})
def test_config_documents(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = tmp_path / "isthmus.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    check_config(path)
    count("config")


@FUZZ
@given(st.text() | st.binary().map(lambda b: b.decode("latin-1")))
@example('[source]\nurl = "sqlite:///x"\n[source]\n')
@example("a = 1\na = 2\n")
@example("\ufeff[target]\n")
@example('x = """\n')
def test_config_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "isthmus.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    check_config(path)
    count("config")


@FUZZ
@given(st.data())
def test_config_edits(tmp_path: Path, data: st.DataObject) -> None:
    """A valid file, then random characters inserted, deleted or replaced."""
    text = toml_document(VALID)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(text)))
        what = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chars = data.draw(st.text(alphabet=string.printable + "é\x00\u2028", max_size=4))
        if what == "insert":
            text = text[:at] + chars + text[at:]
        elif what == "delete":
            text = text[:at] + text[at + len(chars) :]
        else:
            text = text[:at] + chars + text[at + len(chars) :]
    path = tmp_path / "isthmus.toml"
    path.write_text(text, encoding="utf-8")
    check_config(path)
    count("config")


# -- cron ---------------------------------------------------------------------------------------

CRON_TOKENS = st.sampled_from(
    ["*", "?", "L", "W", "#", "/", "-", ",", "0", "1", "5", "7", "12", "13", "24", "29", "30",
     "31", "59", "60", "99", "jan", "feb", "mon", "sun", "fri", "1#5", "5L", "15W", "2-30/7",
     "*/0", "*/61", "H"]
)  # fmt: skip
CRON_FIELDS = st.lists(CRON_TOKENS, min_size=1, max_size=3).map("".join)
CRONS = st.lists(CRON_FIELDS, min_size=3, max_size=8).map(" ".join) | st.text(max_size=40)


@FUZZ
@given(CRONS)
@example("0 0 30 2 *")
@example("0 0 31 2,4,6,9,11 *")
@example("* * 30 2 * 0")
def test_cron(expression: str) -> None:
    now = dt.datetime.now(dt.UTC)
    try:
        schedule = parse_cron(expression)
    except UsageError as exc:
        assert "\n" not in str(exc) and exc.exit_code == 2
    else:
        after = next_run(schedule, now)  # a schedule that is accepted runs some day
        assert after is not None and after > now
    count("cron")


# -- the canonical form -----------------------------------------------------------------------

HOSTILE_TEXT = st.lists(
    st.characters(codec=None, exclude_categories=["Cs"])
    | st.sampled_from(["\x00", "\\", "\t", "\n", "\r", "\b", "\f", "\v", "\\N", "\\x41", "\u2028"])
    | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),  # bytes kept by surrogateescape
    max_size=30,
).map("".join)


@FUZZ
@given(st.binary() | HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogateescape")))
@example(b"\\N")
@example(b"\\")
@example(b"a\x00b\tc\nd\re\\f")
def test_copy_escaping_round_trips(raw: bytes) -> None:
    field = escape(raw)
    assert unescape(field) == raw
    assert not any(c in field for c in (b"\t", b"\n", b"\r"))
    assert field != NULL  # a value is never read as NULL
    count("canonical")


@FUZZ
@given(st.lists(st.none() | st.binary(max_size=12), max_size=8))
@example([b"a\x00b", b"\t"])
@example([None, b"\x00", b""])
def test_escape_column_equals_escaping_each(values: list[bytes | None]) -> None:
    assert escape_column(values) == [NULL if v is None else escape(v) for v in values]
    count("canonical")


@FUZZ
@given(HOSTILE_TEXT)
def test_text_field_round_trips(text: str) -> None:
    field = to_copy_text(text)
    assert unescape(field) == text.encode("utf-8", "surrogateescape")
    # the text normalizer keeps it as it is, and so does a second pass
    canon = NORMALIZERS["text"](field)
    assert canon == field and NORMALIZERS["text"](canon) == canon
    count("canonical")


@FUZZ
@given(st.lists(HOSTILE_TEXT | st.none(), min_size=1, max_size=6))
def test_canonical_line_splits_back(values: list[str | None]) -> None:
    fields = [to_copy_text(v) for v in values]
    line = checksum_line(fields)
    assert line.split(b"\t") == fields
    count("canonical")


# Fields that are not what their column says: random bytes, and the spellings that broke things.
ODD_FIELDS = st.binary(max_size=40) | st.sampled_from(
    [
        b"1e999999999", b"-1e999999999", b"1e-999999999", b"9" * 5000, b"1e4400", b"NaN",
        b"-0", b"Infinity", b"-inf", b"\\N", b"", b" ", b"\\x00", b"1.5e308", b"2e308",
        b'"\\\\ud800"', b'{"a\\\\ud800": 1}', b'"\\\\udc80"', b'{"n": 1e999999999}',
        b'{"n": -1e-999999999}', b"[1, 2.50, -0.0]", b"\xff\xfe", b"2024-02-30", b"0000-00-00",
        b"24:00:00", b"99:99:99.9999999", b"infinity", b"{}", b"{abcdef0123456789abcdef0123456789}",
        b"2024-01-01 00:00:00+14:30", b"2024-01-01T00:00:00.1234567Z", b"t\\tr\\nue",
    ]
)  # fmt: skip


@pytest.mark.parametrize("kind", sorted(NORMALIZERS))
def test_normalizers_take_anything(kind: str) -> None:
    normalize = NORMALIZERS[kind]  # type: ignore[index]

    @FUZZ
    @given(ODD_FIELDS)
    def check(field: bytes) -> None:
        out = normalize(field)
        assert isinstance(out, bytes)
        # a short field never becomes a huge one (PostgreSQL's widest numeric prints ~147k)
        assert len(out) <= 200_000 + 4 * len(field), (field[:40], len(out))
        assert normalize(out) == out, (field, out)  # idempotent
        if field == NULL:
            assert out == NULL
        count("canonical")

    check()


SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.8e308])


@FUZZ
@given(st.floats() | SPECIAL_FLOATS)
def test_floats_one_form(value: float) -> None:
    canon = norm_float8(to_copy_text(value))
    if math.isnan(value):
        assert canon == b"NaN"
    elif math.isinf(value):
        assert canon == (b"Infinity" if value > 0 else b"-Infinity")
    else:
        assert float(canon) == float(f"{value:.15g}")
        for spelling in (repr(value), f"{value:.17g}", f"{value:.16e}", f" {value!r} "):
            assert norm_float8(spelling.encode()) == canon, spelling
    if math.isfinite(float(canon)) or not math.isfinite(value):
        assert norm_float8(canon) == canon
    # else: the 15-digit form of a value within 5e292 of the largest double reads back as
    # infinity, so a second pass is not the first (both sides only ever take one pass, from
    # the value as stored, in Python and in pg_canonical alike: they agree; see the report)
    count("canonical")


HUGE_DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal(f"{sign}{digits}E{exponent}"),
    st.sampled_from(["", "-"]),
    st.integers(0, 10**40),
    st.integers(-(10**9), 10**9),
)


@FUZZ
@given(st.decimals() | HUGE_DECIMALS)
@example(Decimal("1E+999999999"))
@example(Decimal("-0E-999999999"))
@example(Decimal("sNaN"))
def test_decimals_one_form(value: Decimal) -> None:
    forms = {str(value), f"{value:E}", f"{value:e}"}
    if value.is_finite():
        sign, digits, exponent = value.as_tuple()
        scaled = Decimal((sign, (*digits, 0, 0, 0), int(exponent) - 3))  # same value
        forms |= {str(scaled), str(value.copy_abs() if value.is_zero() else value)}
    canon = {norm_decimal(f.encode()) for f in forms}
    assert len(canon) == 1, (value, canon)
    (one,) = canon
    assert len(one) <= 200_000, (value, len(one))
    assert norm_decimal(one) == one
    count("canonical")
