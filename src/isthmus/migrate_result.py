"""What a migration reports (per entity and in all) and the ways it stops short."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from isthmus.batch_writer import Outcome
from isthmus.errors import IsthmusError


class MigrationInterrupted(IsthmusError):
    """Ctrl-C (or SIGTERM): the current batch was rolled back and the checkpoint paused."""

    exit_code = 130


class EntityBusy(IsthmusError):
    exit_code = 3


class Progress(Protocol):
    def start(self, entity: str, total: int, done: int) -> None: ...
    def advance(self, entity: str, rows: int) -> None: ...
    def finish(self, entity: str) -> None: ...


@dataclass
class EntityResult:
    entity: str
    source_table: str
    target_table: str
    checkpoint_id: UUID | None = None
    resumed_after: str | None = None
    rows_read: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    references_updated: int = 0
    seconds: float = 0.0
    status: str = "completed"
    chunk: tuple[int, int] | None = None  # the key range of a chunk run (migrate_chunks.py)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        chunk = {"chunk": list(self.chunk)} if self.chunk is not None else {}
        return {
            "entity": self.entity,
            **chunk,
            "source_table": self.source_table,
            "target_table": self.target_table,
            "status": self.status,
            "checkpoint_id": str(self.checkpoint_id) if self.checkpoint_id else None,
            "resumed_after": self.resumed_after,
            "rows_read": self.rows_read,
            "inserted": o.inserted,
            "updated": o.updated,
            "unchanged": o.unchanged,
            "quarantined": o.quarantined,
            "orphans_set_null": o.orphans_nulled,
            "references_updated": self.references_updated,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
        }


@dataclass
class MigrationResult:
    entities: list[EntityResult]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    pending_ddl: list[dict[str, Any]] = field(default_factory=list)
    open_quarantine: int = 0

    @property
    def exit_code(self) -> int:
        """1 when rows remain outside the target (quarantined), as differences do."""
        return 1 if self.open_quarantine else 0

    def to_dict(self) -> dict[str, Any]:
        rows = sum(e.rows_read for e in self.entities)
        return {
            "entities": [e.to_dict() for e in self.entities],
            "rows_read": rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(rows / self.seconds, 1) if self.seconds > 0 else 0.0,
            "open_quarantine": self.open_quarantine,
            "pending_ddl": self.pending_ddl,
            "warnings": self.warnings,
        }
