"""Per-column tolerances: rounding in the canonical form, and a diff that honours it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialect_support import run_sql
from diff_support import DIALECTS, ids, migrated, run_target, source_url, uuid_of
from isthmus import commands
from isthmus.canonical import NORMALIZERS
from isthmus.errors import ConfigError
from isthmus.tolerance import tolerant
from isthmus.urls import DatabaseURL
from migrate_support import DEMO_ENTITIES


def test_numbers_round_to_the_step() -> None:
    fn = tolerant(NORMALIZERS["decimal"], "decimal", "0.05", "t")
    assert fn(b"12.32") == b"12.3"
    assert fn(b"12.33") == b"12.35"
    assert fn(b"12.325") == b"12.3"  # a tie goes to the even multiple
    assert fn(b"\\N") == b"\\N"
    assert fn(b"NaN") == b"NaN"
    assert fn(b"-0.01") == b"0"


def test_timestamps_truncate_to_the_duration() -> None:
    fn = tolerant(NORMALIZERS["timestamp"], "timestamp", "1s", "t")
    assert fn(b"2024-05-06 07:08:09.999999") == b"2024-05-06 07:08:09.000000"
    assert fn(b"2024-05-06 07:08:09+00") == b"2024-05-06 07:08:09.000000"
    five = tolerant(NORMALIZERS["timestamp"], "timestamp", "5min", "t")
    assert five(b"2024-05-06 07:08:09") == b"2024-05-06 07:05:00.000000"


@pytest.mark.parametrize(
    ("kind", "spec"),
    [("decimal", "-1"), ("decimal", "x"), ("timestamp", "1 fortnight"), ("text", "1")],
)
def test_bad_tolerances_are_refused(kind: str, spec: str) -> None:
    with pytest.raises(ConfigError):
        tolerant(NORMALIZERS[kind], kind, spec, "tolerances.c")  # type: ignore[arg-type,index]


@given(
    st.decimals(min_value=-(10**6), max_value=10**6, places=4),
    st.sampled_from(["0.01", "1", "0.5"]),
)
def test_values_within_half_a_step_of_a_multiple_agree(value: object, step: str) -> None:
    fn = tolerant(NORMALIZERS["decimal"], "decimal", step, "t")
    once = fn(str(value).encode())
    assert fn(once) == once  # rounding a rounded value changes nothing


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_diff_ignores_changes_within_the_tolerance(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    sections = "".join(
        f"[entities.{e}]\n" + ("tolerances = { balance = 1 }\n" if e == "patients" else "")
        for e in DEMO_ENTITIES
    )
    setup = migrated(source_url(request, dialect), fresh_pg_url, tmp_path, extra_config=sections)
    near, far = ids(setup.source, "patients")[:2]
    run_sql(setup.source, [("UPDATE patients SET balance = 0 WHERE id IN (%s, %s)", (near, far))])
    run_target(
        setup,
        [
            (
                "UPDATE public.patients SET balance = 0.3 WHERE id = %s",
                (uuid_of(setup, "patients", near),),
            ),  # rounds to 0, as the source's 0 does
            (
                "UPDATE public.patients SET balance = 2.3 WHERE id = %s",
                (uuid_of(setup, "patients", far),),
            ),  # rounds to 2
        ],
    )
    result = commands.diff(setup.config, ["patients"])
    (entity,) = result.entities
    assert entity.found.of("conflicted_records") == [far], entity.to_dict()
    assert entity.to_dict()["counts"]["missing_records"] == {}
    criteria = entity.to_dict()
    assert criteria["method"] in ("full", "segments")
