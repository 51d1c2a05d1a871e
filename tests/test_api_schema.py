"""Schemathesis against the API's own OpenAPI schema: every operation, with data that fits
the schema and data that breaks it, the bearer token supplied, on a real migrated database.
No input may get a 5xx; the answers must match the schema the API publishes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import PgDatabases
from diff_support import migrated
from isthmus.api import create_app
from isthmus.urls import parse_url
from migrate_support import Setup

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# per operation and generation mode; ISTHMUS_API_FUZZ_EXAMPLES=N searches harder (and at
# random: the default run is derandomized, the same examples every time)
FUZZ = os.environ.get("ISTHMUS_API_FUZZ_EXAMPLES")
EXAMPLES = int(FUZZ) if FUZZ else 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def app(pg_databases: PgDatabases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    directory = tmp_path_factory.mktemp("api_schema")
    source = parse_url(f"sqlite:///{directory / 'legacy.db'}")
    setup: Setup = migrated(source, pg_databases.create("isthmus_api_schema"), directory)
    application = create_app(setup.config, token=TOKEN)
    with TestClient(application):  # startup and shutdown (background tasks end there)
        yield application


def exercise(case_strategy: Any, failures: list[str], label: str) -> int:
    """Run ``EXAMPLES`` generated cases; record the first failure of the operation."""
    calls = 0

    @given(case=case_strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not FUZZ,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=AUTH)
        case.validate_response(response, checks=CHECKS, headers=AUTH)

    try:
        run()
    except Unsatisfiable:  # negative data for an operation that takes none: nothing to send
        assert calls == 0, label
    except (Exception, BaseExceptionGroup) as exc:
        failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:2000]}")
    return calls


# schemathesis's own negative strategies draw from `random` (its business, not ours)
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_no_generated_request_gets_a_server_error(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = 0
    calls = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} ({mode.value})"
            calls += exercise(operation.as_strategy(generation_mode=mode), failures, label)
    took = time.monotonic() - started
    print(f"schemathesis: {operations} operations, {calls} requests, {took:.1f}s")
    assert operations == 22
    assert not failures, "\n\n".join(failures)
