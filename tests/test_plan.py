from __future__ import annotations

import pytest

from isthmus.config import config_from_dict
from isthmus.dialects.base import Column, ForeignKey, SchemaInfo, Table
from isthmus.entities import resolve_entities
from isthmus.errors import ConfigError, UsageError
from isthmus.plan import build_plan

CONFIG = {"source": {"url": "sqlite:///x.db"}, "target": {"url": "postgresql://h/db"}}


def table(name: str, *fks: tuple[str, str, bool], key: str = "id") -> Table:
    cols = [Column(key, "integer", "integer", nullable=False)]
    cols += [Column(c, "integer", "integer", nullable=nullable) for c, _, nullable in fks]
    return Table(
        name=name,
        columns=(*cols, Column("name", "text", "text")),
        primary_key=(key,),
        foreign_keys=tuple(ForeignKey((c,), parent, ("id",)) for c, parent, _ in fks),
    )


def plan_of(*tables: Table, entities: dict[str, object] | None = None) -> list[str]:
    schema = SchemaInfo(tables={t.name: t for t in tables})
    config = config_from_dict({**CONFIG, "entities": entities or {}})
    return build_plan(resolve_entities(config, schema)).names


def test_dental_chain_is_ordered_parents_first() -> None:
    tables = [
        table("products", ("order_id", "orders", False)),
        table("orders", ("patient_id", "patients", False)),
        table("patients", ("doctor_id", "doctors", False)),
        table("doctors", ("profile_id", "profiles", False)),
        table("profiles", ("office_id", "offices", False)),
        table("offices"),
    ]
    assert plan_of(*tables) == ["offices", "profiles", "doctors", "patients", "orders", "products"]


def test_self_reference_is_deferred_to_a_second_pass() -> None:
    schema = SchemaInfo(tables={"employees": table("employees", ("manager_id", "employees", True))})
    plan = build_plan(resolve_entities(config_from_dict(CONFIG), schema))
    assert plan["employees"].deferred == ("manager_id",)
    assert plan["employees"].parents == ()


def test_breakable_cycle_defers_the_nullable_column() -> None:
    a = table("a", ("b_id", "b", True))
    b = table("b", ("a_id", "a", False))
    schema = SchemaInfo(tables={"a": a, "b": b})
    plan = build_plan(resolve_entities(config_from_dict(CONFIG), schema))
    assert plan.names == ["a", "b"]
    assert plan["a"].deferred == ("b_id",)
    assert plan["b"].deferred == ()


def test_unbreakable_cycle_is_a_config_error_naming_it() -> None:
    a = table("a", ("b_id", "b", False))
    b = table("b", ("a_id", "a", False))
    with pytest.raises(ConfigError, match=r"cycle .*a.*b.*cannot be broken"):
        plan_of(a, b)


def test_unbreakable_self_reference() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        plan_of(table("nodes", ("parent_id", "nodes", False)))


def test_explicit_entities_are_exactly_those_listed() -> None:
    offices, profiles = table("offices"), table("profiles", ("office_id", "offices", False))
    names = plan_of(offices, profiles, table("junk"), entities={"offices": {}, "profiles": {}})
    assert names == ["offices", "profiles"]


def test_reference_to_a_table_that_is_not_an_entity_is_named() -> None:
    offices, profiles = table("offices"), table("profiles", ("office_id", "offices", False))
    with pytest.raises(ConfigError, match=r"office_id.*offices.*not an entity"):
        plan_of(offices, profiles, entities={"profiles": {}})


def test_missing_table_and_column_are_named() -> None:
    with pytest.raises(ConfigError, match="source_table = 'nope'"):
        plan_of(table("offices"), entities={"offices": {"source_table": "nope"}})
    with pytest.raises(ConfigError, match=r"updated_at = 'changed'.*no column"):
        plan_of(table("offices"), entities={"offices": {"updated_at": "changed"}})
    with pytest.raises(ConfigError, match="exclude"):
        plan_of(table("offices"), entities={"offices": {"exclude": ["ghost"]}})


def test_renames_work_in_either_direction() -> None:
    schema = SchemaInfo(tables={"doctors": table("doctors")})
    for columns in ({"name": "full_name"}, {"full_name": "name"}):
        config = config_from_dict({**CONFIG, "entities": {"doctors": {"columns": columns}}})
        (doctors,) = resolve_entities(config, schema)
        assert doctors.columns == {"id": "id", "name": "full_name"}


def test_text_keyed_table_keeps_its_key() -> None:
    codes = Table(
        "codes", (Column("code", "varchar(5)", "text", nullable=False),), primary_key=("code",)
    )
    (entity,) = resolve_entities(config_from_dict(CONFIG), SchemaInfo(tables={"codes": codes}))
    assert not entity.uuid_keyed
    assert entity.key_columns == ("code",)


def test_select_unknown_entity_is_a_usage_error() -> None:
    plan = build_plan(
        resolve_entities(config_from_dict(CONFIG), SchemaInfo(tables={"a": table("a")}))
    )
    with pytest.raises(UsageError, match="no entity named 'b'"):
        plan.select(["b"])
