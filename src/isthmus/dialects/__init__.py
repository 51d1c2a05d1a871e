"""Database dialects: one module per database, chosen by the URL's scheme."""

from __future__ import annotations

import importlib

from isthmus.dialects.base import Capabilities, SourceDialect
from isthmus.errors import ConfigError
from isthmus.urls import DatabaseURL

_SOURCE_MODULES = {
    "postgresql": "isthmus.dialects.postgresql",
    "embedded": "isthmus.dialects.postgresql",
    "mysql": "isthmus.dialects.mysql",
    "sqlite": "isthmus.dialects.sqlite",
}


def open_source(url: DatabaseURL) -> SourceDialect:
    """Open the source database named by ``url`` with its dialect module's ``Source`` class."""
    module_name = _SOURCE_MODULES.get(url.dialect)
    if module_name is None:
        raise ConfigError(f"source.url: no source dialect for {url.dialect!r}")
    module = importlib.import_module(module_name)
    source: SourceDialect = module.Source(url)
    return source


def capabilities_of(dialect: str) -> Capabilities:
    module = importlib.import_module(_SOURCE_MODULES[dialect])
    caps: Capabilities = module.CAPABILITIES
    return caps


__all__ = ["Capabilities", "SourceDialect", "capabilities_of", "open_source"]
