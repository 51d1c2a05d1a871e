"""UUID strategies for new mappings, generating a whole batch at once.

- ``uuid7`` (default, RFC 9562): 48-bit Unix milliseconds, then a 42-bit counter
  (the 12 ``rand_a`` bits and the top 30 ``rand_b`` bits, RFC 9562 §6.2 method 1,
  seeded at random each new millisecond with its top bit clear), then 32 random
  bits. Strictly increasing within a process, also when the clock stalls or steps
  back: the target's primary-key index then grows at its right edge.
- ``uuid4``: 122 random bits.
- ``uuid5``: SHA-1 of a namespace UUID and the name ``f"{entity}:{legacy_id}"``
  (entity as written in the config, UTF-8; legacy ID in plain decimal, e.g.
  ``"patients:42"``), so ``uuid.uuid5(namespace, "patients:42")`` gives the same
  value and re-running a migration elsewhere gives the same keys.

Python 3.11 has no ``uuid.uuid7``, and building UUID objects one by one through
``uuid.UUID(...)`` costs about a microsecond each; a migration at 150k rows/s
cannot afford that, hence the bulk generators and :func:`uuid_from_int`.
"""

from __future__ import annotations

import gc
import hashlib
import operator
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any, Protocol
from uuid import UUID, SafeUUID

from isthmus.errors import ConfigError

STRATEGIES = ("uuid7", "uuid4", "uuid5")
DEFAULT_STRATEGY = "uuid7"

_VERSION_MASK = 0xF << 76
_VARIANT_MASK = 0x3 << 62
_RFC_VARIANT = 0x2 << 62
_V4_FLAGS = (4 << 76) | _RFC_VARIANT
_V5_FLAGS = (5 << 76) | _RFC_VARIANT
_V7_FLAGS = (7 << 76) | _RFC_VARIANT
_COUNTER_MAX = (1 << 42) - 1
_COUNTER_SEED_MASK = (1 << 41) - 1  # top counter bit clear: room to count before overflowing
_LOW30 = (1 << 30) - 1

# UUID is a slotted class whose __setattr__ refuses writes; writing the slots
# directly is what UUID.__init__ ends up doing, without its argument parsing.
_INT_SLOT: Any = UUID.__dict__.get("int")
_SAFE_SLOT: Any = UUID.__dict__.get("is_safe")
_SLOTTED = hasattr(_INT_SLOT, "__set__") and hasattr(_SAFE_SLOT, "__set__")
_new_object = object.__new__
_UNKNOWN = SafeUUID.unknown


def uuid_from_int(value: int) -> UUID:
    """``UUID(int=value)`` for a value known to fit in 128 bits, about twice as fast."""
    if not _SLOTTED:  # pragma: no cover - another Python's UUID layout
        return UUID(int=value)
    u = _new_object(UUID)
    _INT_SLOT.__set__(u, value)
    _SAFE_SLOT.__set__(u, _UNKNOWN)
    return u


def uuids_from_ints(values: Sequence[int]) -> list[UUID]:
    if not _SLOTTED:  # pragma: no cover
        return [UUID(int=v) for v in values]
    n = len(values)
    with gc_paused():
        # map() keeps the per-object work in C: a Python loop doubles the cost.
        out: list[UUID] = list(map(_new_object, repeat(UUID, n)))
        deque(map(_INT_SLOT.__set__, out, values), maxlen=0)
        deque(map(_SAFE_SLOT.__set__, out, repeat(_UNKNOWN, n)), maxlen=0)
    return out


class _GCPause:
    """Hold off the cyclic GC while building many small objects that all survive.

    A million UUID objects otherwise trigger hundreds of collections that scan
    the new objects again and again: about 40% of the cost of building them.
    Re-entrant and thread-safe; the previous GC state is restored on exit.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False

    def __enter__(self) -> None:
        with self.lock:
            if self.depth == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.depth += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.was_enabled:
                gc.enable()


_GC_PAUSE = _GCPause()


@contextmanager
def gc_paused() -> Iterator[None]:
    """See :class:`_GCPause`."""
    with _GC_PAUSE:
        yield


class UUIDGenerator(Protocol):
    """Makes one new UUID for each legacy ID of one entity."""

    strategy: str

    def __call__(self, entity: str, legacy_ids: Sequence[int]) -> list[UUID]: ...

    def ints(self, entity: str, legacy_ids: Sequence[int]) -> list[int]:
        """The same as 128-bit integers (no UUID objects: the migration's hot path)."""
        ...


class _Uuid7Clock:
    """The process's uuid7 (milliseconds, counter) state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_ms = -1
        self.last_counter = 0

    def reserve(self, n: int) -> tuple[int, int]:
        """Reserve ``n`` consecutive counter values; returns (timestamp_ms, first counter)."""
        with self.lock:
            now_ms = _now_ms()
            if now_ms > self.last_ms:
                ms, counter = now_ms, _counter_seed()
            else:  # same millisecond, or the clock went back: keep counting
                ms, counter = self.last_ms, self.last_counter + 1
            if counter + n - 1 > _COUNTER_MAX:  # RFC 9562 §6.2: move to the next millisecond
                ms, counter = ms + 1, _counter_seed()
            self.last_ms, self.last_counter = ms, counter + n - 1
        return ms, counter


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _counter_seed() -> int:
    return int.from_bytes(os.urandom(6)) & _COUNTER_SEED_MASK


_UUID7_CLOCK = _Uuid7Clock()


def uuid7_ints(n: int) -> list[int]:
    """``n`` strictly increasing version-7 UUIDs as 128-bit integers."""
    if n <= 0:
        return []
    if n > _COUNTER_SEED_MASK:
        raise ValueError(f"uuid7: cannot make {n} UUIDs in one millisecond")
    ms, counter = _UUID7_CLOCK.reserve(n)
    tails = array("I", os.urandom(4 * n)) if array("I").itemsize == 4 else None
    if tails is None:  # pragma: no cover - platforms where C int is not 32 bits
        tails = array("L", [int.from_bytes(os.urandom(4)) for _ in range(n)])
    head = ((ms & 0xFFFF_FFFF_FFFF) << 80) | _V7_FLAGS
    out: list[int] = []
    done = 0
    while done < n:
        # Within a run the counter's 12 high bits (rand_a) do not change, so only
        # the low 30 bits (shifted above the random tail) vary per UUID.
        # Counting up by adding 1 << 32 cannot carry out of the 30-bit field
        # within a run, so a C-level range does the per-UUID arithmetic.
        c = counter + done
        lo = c & _LOW30
        run = min(n - done, (_LOW30 + 1) - lo)
        first = head | ((c >> 30) << 64) | (lo << 32)
        steps = range(first, first + (run << 32), 1 << 32)
        out.extend(map(operator.or_, steps, tails[done : done + run]))
        done += run
    return out


def uuid7_many(n: int) -> list[UUID]:
    return uuids_from_ints(uuid7_ints(n))


def uuid7() -> UUID:
    return uuid_from_int(uuid7_ints(1)[0])


def uuid7_batch_prefix() -> str:
    """The first 28 characters of a fresh uuid7: append 8 hex digits (a row number)
    to get keys that sort after every uuid7 this process made before, which lets
    mapping rows get a time-ordered primary key from SQL without a per-row call."""
    return str(uuid7())[:28]


def uuid4_many(n: int) -> list[UUID]:
    raw = os.urandom(16 * n)
    from_bytes = int.from_bytes
    keep = ~(_VERSION_MASK | _VARIANT_MASK) & ((1 << 128) - 1)
    return uuids_from_ints(
        [(from_bytes(raw[i : i + 16]) & keep) | _V4_FLAGS for i in range(0, 16 * n, 16)]
    )


def uuid5_name(entity: str, legacy_id: int) -> str:
    """The name hashed by the uuid5 strategy."""
    return f"{entity}:{legacy_id}"


def uuid5_many(namespace: UUID, entity: str, legacy_ids: Sequence[int]) -> list[UUID]:
    prefix = hashlib.sha1(namespace.bytes + entity.encode("utf-8") + b":", usedforsecurity=False)
    keep = ~(_VERSION_MASK | _VARIANT_MASK) & ((1 << 128) - 1)
    from_bytes = int.from_bytes
    values: list[int] = []
    for legacy_id in legacy_ids:
        h = prefix.copy()
        h.update(b"%d" % legacy_id)
        values.append((from_bytes(h.digest()[:16]) & keep) | _V5_FLAGS)
    return uuids_from_ints(values)


class Uuid7Generator:
    strategy = "uuid7"

    def __call__(self, entity: str, legacy_ids: Sequence[int]) -> list[UUID]:
        return uuid7_many(len(legacy_ids))

    def ints(self, entity: str, legacy_ids: Sequence[int]) -> list[int]:
        return uuid7_ints(len(legacy_ids))


class Uuid4Generator:
    strategy = "uuid4"

    def __call__(self, entity: str, legacy_ids: Sequence[int]) -> list[UUID]:
        return uuid4_many(len(legacy_ids))

    def ints(self, entity: str, legacy_ids: Sequence[int]) -> list[int]:
        return [u.int for u in uuid4_many(len(legacy_ids))]


class Uuid5Generator:
    strategy = "uuid5"

    def __init__(self, namespace: UUID) -> None:
        self.namespace = namespace

    def __call__(self, entity: str, legacy_ids: Sequence[int]) -> list[UUID]:
        return uuid5_many(self.namespace, entity, legacy_ids)

    def ints(self, entity: str, legacy_ids: Sequence[int]) -> list[int]:
        return [u.int for u in uuid5_many(self.namespace, entity, legacy_ids)]


def make_generator(
    strategy: str = DEFAULT_STRATEGY, namespace: UUID | str | None = None
) -> UUIDGenerator:
    """The generator of the config's ``migration.uuid`` (``namespace``: ``uuid_namespace``)."""
    if strategy == "uuid7":
        return Uuid7Generator()
    if strategy == "uuid4":
        return Uuid4Generator()
    if strategy == "uuid5":
        if namespace is None or namespace == "":
            raise ConfigError(
                f"migration.uuid = 'uuid5' needs migration.uuid_namespace (a UUID, e.g. {uuid7()})"
            )
        if isinstance(namespace, UUID):
            return Uuid5Generator(namespace)
        try:
            return Uuid5Generator(UUID(namespace.strip()))
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"migration.uuid_namespace: {namespace!r} is not a UUID") from exc
    raise ConfigError(
        f"migration.uuid: unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})"
    )
