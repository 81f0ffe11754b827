"""Throw-away PostgreSQL and MariaDB servers for tests and benchmarks.

Each server runs on 127.0.0.1 on a free port from a fresh data directory under the system temp
directory, and is removed by :meth:`stop` (also registered with :mod:`atexit`). PostgreSQL
refuses to run as root, so as root its commands run as the ``postgres`` user (``runuser``).
Missing binaries raise :class:`MissingServerBinariesError`, which tells to run
``.ci/install-db-servers``; tests must fail on it, not skip.

>>> server = PostgresServer.start()                      # doctest: +SKIP
>>> url = server.create_database("case_1")               # doctest: +SKIP
>>> server.stop()                                        # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

INSTALL_HINT = "run .ci/install-db-servers (apt-get install -y postgresql mariadb-server)"
START_TIMEOUT_S = 60.0


class MissingServerBinariesError(RuntimeError):
    """The database server binaries are not installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    found = candidates[0] if candidates else shutil.which("initdb")
    if not found:
        raise MissingServerBinariesError(
            f"PostgreSQL server binaries (initdb) not found; {INSTALL_HINT}"
        )
    return Path(found).parent


def mariadb_binaries() -> tuple[str, str]:
    """Paths of ``mariadb-install-db`` and ``mariadbd`` (or their MySQL-era names)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    install = shutil.which("mariadb-install-db", path=search) or shutil.which(
        "mysql_install_db", path=search
    )
    server = shutil.which("mariadbd", path=search) or shutil.which("mysqld", path=search)
    if not install or not server:
        raise MissingServerBinariesError(f"MariaDB server binaries not found; {INSTALL_HINT}")
    return install, server


class PostgresServer:
    """A private PostgreSQL cluster; ``user`` is a superuser with trust authentication."""

    backend = "postgresql"

    def __init__(self, base: Path, port: int, user: str, bin_dir: Path, run_as: list[str]):
        self.base, self.port, self.user = base, port, user
        self._bin_dir, self._run_as = bin_dir, run_as
        self._stopped = False
        atexit.register(self.stop)

    @classmethod
    def start(cls, durable: bool = False, user: str = "katib") -> PostgresServer:
        """initdb + pg_ctl start. ``durable=False`` turns fsync off (fast, for tests)."""
        bin_dir = postgres_bin_dir()
        base = Path(tempfile.mkdtemp(prefix="katib-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(base, account.pw_uid, account.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data, sockets = base / "data", base / "sock"
        _run([*run_as, "mkdir", "-p", str(sockets)])
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user]
        _run([*run_as, *initdb, "-E", "UTF8", "--locale=C", "--no-sync"])
        port = free_port()
        server = cls(base, port, user, bin_dir, run_as)
        options = f"-k {sockets} -p {port} -h 127.0.0.1 -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log")]
        try:
            _run([*run_as, *pg_ctl, "-w", "-t", str(int(START_TIMEOUT_S)), "-o", options, "start"])
        except RuntimeError:
            log = (base / "server.log").read_text(errors="replace")[-4000:]
            server.stop()
            raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
        logger.info("PostgreSQL running on 127.0.0.1:%d (%s)", port, base)
        return server

    def url(self, database: str = "postgres") -> str:
        """URL of ``database`` on this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete its data directory (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        pg_ctl = [str(self._bin_dir / "pg_ctl"), "-D", str(self.base / "data")]
        if (self.base / "data" / "postmaster.pid").exists():
            subprocess.run(
                [*self._run_as, *pg_ctl, "-m", "fast", "-w", "stop"],
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.base, ignore_errors=True)


class MariaDBServer:
    """A private MariaDB server without grant tables (any user and password are accepted)."""

    backend = "mysql"

    def __init__(self, base: Path, port: int, process: subprocess.Popen[bytes]):
        self.base, self.port, self._process = base, port, process
        self.user = "root"
        self._stopped = False
        atexit.register(self.stop)

    @classmethod
    def start(cls, durable: bool = False) -> MariaDBServer:
        """mariadb-install-db + mariadbd. ``durable=False`` relaxes log flushing (for tests)."""
        install, binary = mariadb_binaries()
        base = Path(tempfile.mkdtemp(prefix="katib-mariadb-"))
        data = base / "data"
        _run(
            [
                install,
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
            ]
        )
        port = free_port()
        args = [
            binary,
            "--no-defaults",
            "--user=root",
            f"--datadir={data}",
            f"--socket={base / 'mysqld.sock'}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--log-error={base / 'server.log'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-grant-tables",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=256M",
            "--max-connections=300",
        ]
        if not durable:
            args += ["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0"]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(base, port, process)
        try:
            server._wait_ready()
        except RuntimeError:
            log = (base / "server.log").read_text(errors="replace")[-4000:]
            server.stop()
            raise RuntimeError(f"MariaDB did not start:\n{log}") from None
        logger.info("MariaDB running on 127.0.0.1:%d (%s)", port, base)
        return server

    def _wait_ready(self) -> None:
        import pymysql

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self._process.returncode}")
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user=self.user).close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mariadbd is not accepting connections") from None
                time.sleep(0.2)

    def url(self, database: str) -> str:
        """URL of ``database`` on this server."""
        return f"mysql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import pymysql

        with pymysql.connect(host="127.0.0.1", port=self.port, user=self.user) as conn:
            conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete its data directory (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S * 2)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
