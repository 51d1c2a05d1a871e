"""Database URLs as the config file writes them, and the masked form shown to people.

Accepted schemes: ``postgresql://`` (also ``postgres://``), ``mysql://`` and
``mariadb://`` (MySQL and MariaDB), ``sqlite:///path``, and ``embedded://[path]``
for the embedded PostgreSQL that ``isthmus demo`` uses.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from isthmus.errors import ConfigError

_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "embedded": "embedded",
}

# The password runs to the last ``@`` of the authority: one written raw (through ``${VAR}``,
# say) may hold an ``@`` of its own. A scheme starts after no scheme character and nothing is
# given back once matched (possessive ``*+``), and mask_secrets() hands it a word only up to its
# last ``@``: every match found succeeds, so any text costs linear time.
_PASSWORD_IN_URL = re.compile(
    r"(?P<head>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^:/@\s]*+:)"
    r"(?P<pw>[^@\s]*+(?:@[^@\s/]*+(?=@))*+)(?P<tail>@)",
    re.I,
)
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class DatabaseURL:
    dialect: str  # postgresql | mysql | sqlite | embedded
    raw: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None  # database name, or file path for sqlite, data directory for embedded
    query: tuple[tuple[str, str], ...]

    def masked(self) -> str:
        return mask_url(self.raw)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked()!r})"

    def with_database(self, database: str) -> DatabaseURL:
        """The same server, another database (tests create one per session)."""
        parts = urlsplit(self.raw)
        raw = parts._replace(path="/" + database).geturl()
        return parse_url(raw)


def parse_url(raw: str, *, where: str = "url") -> DatabaseURL:
    """Parse ``raw``; a bad URL raises ConfigError naming ``where`` and the masked value."""
    if not isinstance(raw, str) or "://" not in raw:
        raise ConfigError(
            f"{where}: {mask_secrets(str(raw))!r} is not a database URL (expected e.g. postgresql://host/db)"
        )
    try:
        parts = urlsplit(raw)
    except ValueError:  # a raw '[' or ']' in the password (its text quotes the netloc)
        scheme, _, rest = raw.partition("://")
        shown = f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else mask_secrets(raw)
        raise ConfigError(
            f"{where}: {shown!r} is not a valid URL; percent-encode special characters of the"
            " user and password (e.g. '[' as %5B)"
        ) from None
    scheme = parts.scheme.lower().split("+", 1)[0]
    dialect = _SCHEMES.get(scheme)
    if dialect is None:
        known = ", ".join(sorted(_SCHEMES))
        raise ConfigError(
            f"{where}: unsupported scheme {parts.scheme!r} in {mask_url(raw)!r} (known: {known})"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: bad port in {mask_url(raw)!r}") from exc
    if dialect in ("sqlite", "embedded"):
        path = unquote(parts.path)
        if parts.netloc:  # sqlite://relative/path is a common slip: keep the host part
            path = parts.netloc + path
        if dialect == "sqlite":
            path = _sqlite_path(path)
            if not path:
                raise ConfigError(
                    f"{where}: sqlite URL {raw!r} names no file (expected sqlite:///path/to/file.db)"
                )
        database: str | None = path or None
        host = None
    else:
        database = unquote(parts.path.lstrip("/")) or None
        host = parts.hostname
        if dialect == "mysql" and not database:
            raise ConfigError(
                f"{where}: {mask_url(raw)!r} names no database (expected mysql://user@host:3306/db)"
            )
    return DatabaseURL(
        dialect=dialect,
        raw=raw,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=host,
        port=port,
        database=database,
        query=tuple(parse_qsl(parts.query)),
    )


def mask_url(raw: str) -> str:
    """The URL ``raw`` with its password, as urlsplit reads it (up to the last ``@``, spaces
    included), replaced with ``***``."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return mask_secrets(raw)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        raw = urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}"))
    return mask_secrets(raw)


def mask_secrets(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    if "://" not in text or "@" not in text:
        return text
    return _WORD.sub(_mask_word, text)


def _mask_word(word: re.Match[str]) -> str:
    """A password holds no whitespace and ends at an ``@``: a word is masked up to its last."""
    text = word[0]
    end = text.rfind("@") + 1
    if not end or "://" not in text:
        return text
    head = _PASSWORD_IN_URL.sub(lambda m: f"{m['head']}***{m['tail']}", text[:end])
    return head + text[end:]


def _sqlite_path(path: str) -> str:
    """SQLAlchemy's rule: ``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute.

    People often write ``sqlite:///tmp/legacy.db`` meaning ``/tmp/legacy.db``; when the
    relative file does not exist and the absolute one does, take the absolute one.
    """
    if not path.startswith("/"):
        return path
    relative = path[1:]
    if relative.startswith("/"):
        return relative
    if relative and not os.path.exists(relative) and os.path.exists(path):
        return path
    return relative
