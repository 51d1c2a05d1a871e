from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.config import load_config
from isthmus.errors import ConfigError

BASE = """
[source]
url = "sqlite:///legacy.db"
[target]
url = "postgresql://127.0.0.1:5432/app"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "isthmus.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "isthmus.toml") in message
    return message


def test_minimal_config_has_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.target.state_schema == "isthmus"
    assert config.migration.batch_size == 10_000
    assert config.migration.uuid == "uuid7"
    assert config.migration.on_orphan == "quarantine"
    assert config.entities == {}


def test_full_contract_example_loads(tmp_path: Path) -> None:
    text = """
[source]
url = "mysql://root@127.0.0.1:3306/legacy"
[target]
url = "postgresql://127.0.0.1:5432/app"
state_schema = "isthmus"
[migration]
batch_size = 10000
uuid = "uuid5"
uuid_namespace = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
on_orphan = "quarantine"
[entities.profiles]
[entities.doctors]
source_table = "doctors"
target_table = "doctors"
key = "id"
target_key = "id"
columns = { full_name = "name" }
exclude = ["legacy_flags"]
references = { profile_id = "profiles" }
updated_at = "updated_at"
target_updated_at = "updated_at"
"""
    config = load_config(write(tmp_path, text))
    doctors = config.entities["doctors"]
    assert doctors.columns == {"full_name": "name"}
    assert doctors.references == {"profile_id": "profiles"}
    assert config.source.database_url.dialect == "mysql"


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[migration]\nbatch_sise = 5\n")
    assert "migration.batch_sise" in message
    assert "batch_size" in message


def test_unknown_key_in_an_entity(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[entities.doctors]\ncolums = {a = 'b'}\n")
    assert "entities.doctors.colums" in message


def test_bad_value_names_key_and_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[migration]\non_orphan = 'ignore'\n")
    assert "migration.on_orphan" in message
    assert "ignore" in message


def test_negative_batch_size(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[migration]\nbatch_size = -1\n")
    assert "migration.batch_size" in message


def test_bad_url_scheme(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace("sqlite:///legacy.db", "oracle://scott:tiger@db/x"))
    assert "source.url" in message
    assert "tiger" not in message


def test_not_a_url(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace("sqlite:///legacy.db", "legacy.db"))
    assert "source.url" in message


def test_target_must_be_postgresql(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, BASE.replace("postgresql://127.0.0.1:5432/app", "mysql://root@h/app")
    )
    assert "target.url" in message


def test_reference_to_unknown_entity(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, BASE + "[entities.doctors]\nreferences = { profile_id = 'profilez' }\n"
    )
    assert "profilez" in message
    assert "entities.doctors.references.profile_id" in message


def test_uuid5_needs_a_namespace(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[migration]\nuuid = 'uuid5'\n")
    assert "uuid_namespace" in message


def test_missing_required_section(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[source]\nurl = "sqlite:///x.db"\n')
    assert "target" in message


def test_invalid_toml(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[source\nurl=1")
    assert "TOML" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_env_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGACY_PW", "s3cr3t")
    text = BASE.replace("sqlite:///legacy.db", "mysql://root:${LEGACY_PW}@127.0.0.1:3306/legacy")
    text += "[migration]\nbatch_size = 500\nuuid = '${UUID_KIND:-uuid4}'\n"
    config = load_config(write(tmp_path, text))
    assert config.source.database_url.password == "s3cr3t"
    assert config.migration.uuid == "uuid4"
    assert "s3cr3t" not in config.source.database_url.masked()


def test_unset_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_VAR", raising=False)
    message = error_of(tmp_path, BASE.replace("app", "${NOPE_VAR}"))
    assert "NOPE_VAR" in message
    assert "target.url" in message


def test_password_never_in_error(tmp_path: Path) -> None:
    text = BASE.replace("sqlite:///legacy.db", "mysql://root:hunter2@127.0.0.1:notaport/legacy")
    message = error_of(tmp_path, text)
    assert "hunter2" not in message


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60))
def test_fuzzed_values_never_crash_the_parser(value: str) -> None:
    from isthmus.config import config_from_dict

    raw = {"source": {"url": value}, "target": {"url": "postgresql://h/db", "state_schema": value}}
    try:
        config_from_dict(raw)
    except ConfigError as exc:
        assert "\n" not in str(exc)
