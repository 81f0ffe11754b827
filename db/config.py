"""Where the observation log lives: database URLs and Katib's environment variables.

Accepted URLs (user names and passwords percent-encoded):

==========================================  ===================================================
``sqlite:///relative/path.db``              SQLite file, relative to the working directory
``sqlite:////absolute/path.db``             SQLite file, absolute path (SQLAlchemy's rule)
``path/to/file.db`` (no scheme)             SQLite file
``postgresql://user:pw@host:5432/db``       PostgreSQL (``postgres://`` too); query options are
                                            libpq parameters, e.g. ``?sslmode=require``
``mysql://user:pw@host:3306/db``            MySQL / MariaDB (``mariadb://``, ``mysql+pymysql://``)
==========================================  ===================================================

Without a URL, :func:`config_from_env` reads the variables Katib's DB manager uses:
``DB_NAME`` (``mysql`` | ``postgres``), ``DB_USER`` (default ``root`` for MySQL, ``katib`` for
PostgreSQL), ``DB_PASSWORD``, ``KATIB_MYSQL_DB_HOST`` (``katib-mysql``), ``KATIB_MYSQL_DB_PORT``
(3306), ``KATIB_MYSQL_DB_DATABASE`` (``katib``), ``KATIB_POSTGRESQL_DB_HOST`` (``katib-postgres``),
``KATIB_POSTGRESQL_DB_PORT`` (5432), ``KATIB_POSTGRESQL_DB_DATABASE`` (``katib``) and
``KATIB_POSTGRESQL_SSL_MODE`` (``disable``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

Backend = Literal["sqlite", "postgresql", "mysql"]

#: SQLite file used when neither a URL nor ``DB_NAME`` is given.
DEFAULT_SQLITE_PATH = "katib-observations.db"

_SCHEMES: dict[str, Backend] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+pymysql": "mysql",
}
_DEFAULT_PORTS: dict[Backend, int] = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class DatabaseConfig:
    """A parsed database location. ``path`` is for SQLite; the rest for the server backends."""

    backend: Backend
    path: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    def redacted(self) -> str:
        """The location as a URL without the password, for logs."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        auth = f"{quote(self.user, safe='')}:***@" if self.user else ""
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.backend}://{auth}{self.host}:{self.port}/{self.database}" + (
            f"?{query}" if query else ""
        )


def parse_url(url: str) -> DatabaseConfig:
    """Parse a database URL (see the module docstring). Raises ``ValueError`` when unusable."""
    if "://" not in url:
        if not url:
            raise ValueError("empty database URL")
        return DatabaseConfig(backend="sqlite", path=url)
    scheme, rest = url.split("://", 1)
    backend = _SCHEMES.get(scheme.lower())
    if backend is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}; use sqlite, postgresql or mysql"
        )
    if backend == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(
                f"SQLite URL {url!r} needs a path: sqlite:///relative.db or sqlite:////abs.db"
            )
        path = unquote(rest[1:])
        if path == ":memory:":
            raise ValueError("in-memory SQLite is not supported: each thread would see its own DB")
        return DatabaseConfig(backend="sqlite", path=path)
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if backend == "mysql" and options:
        raise ValueError(f"MySQL URLs take no query options, got {sorted(options)}")
    try:
        port = parts.port or _DEFAULT_PORTS[backend]
    except ValueError as exc:
        raise ValueError(f"bad port in database URL: {exc}") from None
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ValueError(f"database URL {scheme}://... names no database (…/DBNAME)")
    return DatabaseConfig(
        backend=backend,
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        options=options,
    )


def config_from_env(environ: Mapping[str, str]) -> DatabaseConfig | None:
    """Katib's DB manager variables -> config; ``None`` when ``DB_NAME`` is unset or empty."""
    name = environ.get("DB_NAME", "")
    if not name:
        return None
    password = environ.get("DB_PASSWORD", "")
    if name == "mysql":
        return DatabaseConfig(
            backend="mysql",
            host=environ.get("KATIB_MYSQL_DB_HOST", "katib-mysql"),
            port=_env_port(environ, "KATIB_MYSQL_DB_PORT", 3306),
            user=environ.get("DB_USER", "root"),
            password=password,
            database=environ.get("KATIB_MYSQL_DB_DATABASE", "katib"),
        )
    if name == "postgres":
        return DatabaseConfig(
            backend="postgresql",
            host=environ.get("KATIB_POSTGRESQL_DB_HOST", "katib-postgres"),
            port=_env_port(environ, "KATIB_POSTGRESQL_DB_PORT", 5432),
            user=environ.get("DB_USER", "katib"),
            password=password,
            database=environ.get("KATIB_POSTGRESQL_DB_DATABASE", "katib"),
            options={"sslmode": environ.get("KATIB_POSTGRESQL_SSL_MODE", "disable")},
        )
    raise ValueError(f"DB_NAME must be 'mysql' or 'postgres', got {name!r}")


def resolve_config(url: str | None, environ: Mapping[str, str]) -> DatabaseConfig:
    """Pick the database: an explicit URL, else Katib's env variables, else the SQLite default."""
    if url:
        return parse_url(url)
    return config_from_env(environ) or DatabaseConfig(backend="sqlite", path=DEFAULT_SQLITE_PATH)


def _env_port(environ: Mapping[str, str], key: str, default: int) -> int:
    raw = environ.get(key, "")
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{key} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"{key} must be in 1..65535, got {port}")
    return port
