"""isthmus: move a legacy integer-keyed database onto a UUID-keyed PostgreSQL and keep both in step."""

__version__ = "0.1.0"
