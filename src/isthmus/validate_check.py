"""One validation of one entity, before it is stored: what was checked, what was found.

Each check counts its findings by *kind* (``missing_in_target``, ``value_mismatch``, …) and
keeps the first few of each as samples, so a report stays small however broken the target
is: ``discrepancy_details`` holds ``counts`` (every finding), ``samples`` (at most
``limit`` per kind) and ``truncated`` (whether samples were left out). Findings that are
reported but do not fail the check (orphans already in the legacy source, quarantined rows)
are ``notes``: counted and sampled the same way, under ``metadata.notes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SAMPLES = 20

COMPLETENESS = "completeness_check"
DATA = "data_integrity"
RELATIONSHIPS = "relationship_integrity"
PERFORMANCE = "performance_check"
# the order a run does them in, and the order reports are shown in
VALIDATION_TYPES = (COMPLETENESS, DATA, RELATIONSHIPS, PERFORMANCE)


@dataclass
class Findings:
    """Counts by kind, with the first ``limit`` samples of each."""

    limit: int = DEFAULT_SAMPLES
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, kind: str, sample: Any, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        kept = self.samples.setdefault(kind, [])
        if len(kept) < self.limit:
            kept.append(sample)

    def add_many(self, kind: str, samples: list[Any], total: int | None = None) -> None:
        """``total`` findings of ``kind`` (``len(samples)`` when not given), ``samples``
        being the first of them."""
        n = len(samples) if total is None else total
        if n <= 0:
            return
        self.counts[kind] = self.counts.get(kind, 0) + n
        kept = self.samples.setdefault(kind, [])
        kept.extend(samples[: max(0, self.limit - len(kept))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "samples": {k: list(v) for k, v in self.samples.items()},
            "truncated": any(len(self.samples.get(k, [])) < n for k, n in self.counts.items()),
        }


@dataclass
class Check:
    """One (entity, validation type) result, the shape of a stored report."""

    validation_type: str
    entity: str
    source_entity: str  # the source table
    target_entity: str  # schema.table in the target
    limit: int = DEFAULT_SAMPLES
    records_validated: int = 0
    criteria: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    extra_details: dict[str, Any] = field(default_factory=dict)  # beside counts and samples
    skipped: str | None = None  # why nothing was checked (passes, says why)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    findings: Findings = field(init=False)
    notes: Findings = field(init=False)

    def __post_init__(self) -> None:
        self.findings = Findings(self.limit)
        self.notes = Findings(self.limit)

    @property
    def discrepancies(self) -> int:
        return self.findings.total

    @property
    def passed(self) -> bool:
        return self.discrepancies == 0

    def finish(self) -> Check:
        self.seconds = time.perf_counter() - self.started
        return self

    @property
    def execution_time_ms(self) -> int:
        return max(1, round(self.seconds * 1000))

    def details(self) -> dict[str, Any] | None:
        if not self.findings.counts and not self.extra_details:
            return None
        return {**self.findings.to_dict(), **self.extra_details}

    def full_metadata(self) -> dict[str, Any]:
        out = {"entity": self.entity, **self.metadata}
        if self.notes.counts:
            out["notes"] = self.notes.to_dict()
        if self.skipped:
            out["skipped"] = self.skipped
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "validation_type": self.validation_type,
            "entity": self.entity,
            "source_entity": self.source_entity,
            "target_entity": self.target_entity,
            "passed": self.passed,
            "records_validated": self.records_validated,
            "discrepancies_found": self.discrepancies,
            "discrepancy_details": self.details(),
            "validation_criteria": self.criteria,
            "metadata": self.full_metadata(),
            "execution_time_ms": self.execution_time_ms,
        }
