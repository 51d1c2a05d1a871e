"""The state store: the five control tables of one schema, behind methods with clear errors.

Every method takes the caller's ``sqlalchemy.Connection`` and runs inside the caller's
transaction, so a migration batch can write its target rows, its mappings and its
checkpoint in one commit. Writes are checked by the pydantic models first (RuleViolation,
IllegalTransition), and what the database still refuses is translated to the same errors.
The legacy-ID map's own methods live with the mapping code; its table is ``store.mappings``.
"""

from __future__ import annotations

from isthmus.state.checkpoints import CheckpointMethods
from isthmus.state.db_errors import NotFound
from isthmus.state.differentials import DifferentialMethods
from isthmus.state.jobs import JOB_FIELDS_SETTABLE, JobMethods
from isthmus.state.reports import DEFAULT_REPORT_TTL, ReportMethods


class StateStore(JobMethods, CheckpointMethods, DifferentialMethods, ReportMethods):
    """``StateStore(schema)``: jobs, checkpoints, differentials and reports in ``schema``."""


__all__ = ["DEFAULT_REPORT_TTL", "JOB_FIELDS_SETTABLE", "NotFound", "StateStore"]
