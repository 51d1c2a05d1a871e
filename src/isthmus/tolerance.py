"""Per-column tolerances: values that differ by less than a declared step compare equal.

``tolerances = { weight_g = 0.01, synced_at = "1s" }`` in an entity's section. A numeric
column is compared after rounding its canonical value to the nearest multiple of the step
(half to even); a timestamp after truncating it to a multiple of the duration (``500ms``,
``1s``, ``5min``, ``1h``). The rounding is part of the column's canonical form, so the
migration's base checksums, the diff and validation all compare the same rounded values;
the target still receives the value as read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from isthmus.canonical import NULL, CanonKind, FieldFn
from isthmus.errors import ConfigError

NUMERIC: frozenset[CanonKind] = frozenset({"integer", "decimal", "float8", "float4"})
TEMPORAL: frozenset[CanonKind] = frozenset({"timestamp", "timestamptz"})
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h)\s*")
_MICROS = {"us": 1, "ms": 1_000, "s": 1_000_000, "min": 60_000_000, "h": 3_600_000_000}
_EPOCH = datetime(1970, 1, 1)


def tolerant(fn: FieldFn, kind: CanonKind, spec: float | str, where: str) -> FieldFn:
    """``fn`` followed by the rounding ``spec`` declares for a ``kind`` column."""
    if kind in NUMERIC:
        step = _step(spec, where)

        def rounded(field: bytes) -> bytes:
            value = fn(field)
            if value == NULL:
                return value
            try:
                number = Decimal(value.decode())
            except InvalidOperation:
                return value  # NaN, Infinity, not a number: compared as they are
            if not number.is_finite():
                return value
            q = (number / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * step
            text = format(q.normalize(), "f")
            return b"0" if text in ("-0", "0") else text.encode()

        return rounded
    if kind in TEMPORAL:
        micros = _duration(spec, where)

        def truncated(field: bytes) -> bytes:
            value = fn(field)
            if value == NULL:
                return value
            try:
                when = datetime.fromisoformat(value.decode())
            except ValueError:
                return value
            if when.tzinfo is not None:
                when = when.astimezone(UTC).replace(tzinfo=None)
            delta = when - _EPOCH
            total = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            kept = _EPOCH + timedelta(microseconds=total - total % micros)
            return kept.strftime("%Y-%m-%d %H:%M:%S.%f").encode()

        return truncated
    raise ConfigError(f"{where}: a tolerance applies to numbers and timestamps, not to {kind}")


def _step(spec: float | str, where: str) -> Decimal:
    try:
        step = Decimal(str(spec))
    except InvalidOperation:
        raise ConfigError(f"{where} = {spec!r}: not a number") from None
    if not step.is_finite() or step <= 0:
        raise ConfigError(f"{where} = {spec!r}: must be a positive number")
    return step


def _duration(spec: float | str, where: str) -> int:
    found = _DURATION.fullmatch(str(spec))
    if not found:
        raise ConfigError(f"{where} = {spec!r}: a duration such as '500ms', '1s', '5min', '1h'")
    micros = int(Decimal(found[1]) * _MICROS[found[2]])
    if micros <= 0:
        raise ConfigError(f"{where} = {spec!r}: must be positive")
    return micros
