"""The error classes every layer raises; the CLI turns them into one line and an exit code.

Exit codes (the contract): 0 done, 1 validation failed or differences remain,
2 bad usage or config, 3 a database or runtime error.
"""

from __future__ import annotations

import re

# What str.splitlines() splits on: a message holding one of these would be cut short.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``): a message quoting a name or value
    that holds one (a config key ``"a\\nb"``) stays one line, all of it shown."""
    return _LINE_BREAKS.sub(lambda m: ascii(m[0])[1:-1], text)


def first_line(exc: BaseException) -> str:
    """What an error says, on one line (its type's name when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class IsthmusError(Exception):
    """Base of every error isthmus reports to a user."""

    exit_code = 3


class ConfigError(IsthmusError):
    """The config file (or an argument standing in for it) is wrong."""

    exit_code = 2


class UsageError(IsthmusError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class DifferencesFound(IsthmusError):
    """Validation failed or differences remain; not a crash."""

    exit_code = 1


class DatabaseError(IsthmusError):
    """A database refused or failed an operation."""

    exit_code = 3


class TransientDatabaseError(DatabaseError):
    """Worth retrying after a pause: lost connection, deadlock, serialization failure, timeout."""


class TerminalDatabaseError(DatabaseError):
    """Retrying will not help: bad SQL, missing table, constraint violation, permission denied."""


class RuleViolation(IsthmusError, ValueError):
    """A control-table row breaks a validation rule of the specification."""

    exit_code = 3


class IllegalTransition(IsthmusError):
    """A checkpoint or job was asked to move to a status its state machine forbids."""

    exit_code = 3


class MappingConflict(IsthmusError):
    """The legacy-ID map would hold the same legacy ID or UUID twice for one entity."""

    exit_code = 3
