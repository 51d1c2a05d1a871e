"""Which way each difference flows in a job's run: the direction and the conflict rule.

A difference is (comparison type, side) as :mod:`isthmus.diff_classify` finds it; the side
says who changed the record since both held its base checksum. The rules:

==========================  =====================  ==============================
difference                  source_to_target       bidirectional
==========================  =====================  ==============================
missing / source (new)      write to target        write to target
conflicted / source         write to target        write to target
deleted / source            delete in target       delete in target
conflicted / target         write to target        write to source
missing / target (deleted)  write to target        delete in source
created in the target       left alone             insert into source (new key)
both sides changed:         by the job's rule      by the job's rule
conflicted / both|unknown,
missing / both, deleted /
both
==========================  =====================  ==============================

The job's rule for a record changed on both sides: ``source_wins`` (the source's version,
or its delete, goes to the target), ``target_wins`` (the target's goes to the source; in a
one-way job the target's version is only kept: nothing is written to the source), and
``manual`` (parked in the review queue, nothing applied until a person decides).

A one-way job overwrites what changed in the target alone: the source is the truth. Rows
created in the target are left alone by a one-way job (the legacy side has no place for
them, and deleting a row the new application made is never a safe default); they stay
reported as differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.diff_classify import CONFLICTED, DELETED, MISSING, Found

BOTH_SIDES = ("both", "unknown")


@dataclass
class Flow:
    """Legacy IDs by what happens to them (ascending), and target keys of created rows."""

    to_target: list[int] = field(default_factory=list)  # source's version written to target
    delete_in_target: list[int] = field(default_factory=list)
    to_source: list[int] = field(default_factory=list)  # target's version written to source
    delete_in_source: list[int] = field(default_factory=list)
    created_to_source: list[str] = field(default_factory=list)
    review: list[tuple[str, str, int]] = field(default_factory=list)  # (type, side, id)
    kept: list[int] = field(default_factory=list)  # both changed, target kept (one-way)
    left_alone: list[str] = field(default_factory=list)  # created in target, one-way job

    @property
    def applied(self) -> int:
        """Records this flow writes somewhere."""
        return (
            len(self.to_target)
            + len(self.delete_in_target)
            + len(self.to_source)
            + len(self.delete_in_source)
            + len(self.created_to_source)
        )

    def counts(self) -> dict[str, int]:
        return {
            "to_target": len(self.to_target),
            "delete_in_target": len(self.delete_in_target),
            "to_source": len(self.to_source),
            "delete_in_source": len(self.delete_in_source),
            "created_to_source": len(self.created_to_source),
            "review": len(self.review),
            "kept": len(self.kept),
            "left_alone": len(self.left_alone),
        }


def flow(found: Found, *, bidirectional: bool, rule: str) -> Flow:
    """What a run does with ``found`` (see the module docstring); ``rule`` is the job's
    conflict_resolution (source_wins, target_wins, manual)."""
    out = Flow()
    source_version = {
        (MISSING, "source"): out.to_target,
        (CONFLICTED, "source"): out.to_target,
        (DELETED, "source"): out.delete_in_target,
    }
    target_version = {
        (CONFLICTED, "target"): out.to_source if bidirectional else out.to_target,
        (MISSING, "target"): out.delete_in_source if bidirectional else out.to_target,
    }
    for kind, sides in found.ids.items():
        for side, ids in sides.items():
            bucket = source_version.get((kind, side), target_version.get((kind, side)))
            if bucket is not None:
                bucket.extend(ids)
            elif side in BOTH_SIDES:
                _both(out, kind, side, ids, bidirectional=bidirectional, rule=rule)
            else:
                raise ValueError(f"no sync rule for {kind} on side {side!r}")
    if bidirectional:
        out.created_to_source.extend(found.created_in_target)
    else:
        out.left_alone.extend(found.created_in_target)
    for ids in (out.to_target, out.delete_in_target, out.to_source, out.delete_in_source):
        ids.sort()
    return out


def _both(
    out: Flow, kind: str, side: str, ids: list[int], *, bidirectional: bool, rule: str
) -> None:
    """A record changed on both sides (or with no base to tell): the job's rule decides."""
    if rule == "manual":
        out.review.extend((kind, side, i) for i in ids)
    elif rule == "source_wins":
        (out.delete_in_target if kind == DELETED else out.to_target).extend(ids)
    elif rule == "target_wins":
        if not bidirectional:
            out.kept.extend(ids)
        elif kind == MISSING:  # gone from the target: the source row goes too
            out.delete_in_source.extend(ids)
        else:  # conflicted, or deleted in the source while changed in the target
            out.to_source.extend(ids)
    else:
        raise ValueError(f"unknown conflict rule {rule!r}")
