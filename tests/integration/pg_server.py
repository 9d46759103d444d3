"""Start and stop a throwaway PostgreSQL server for integration tests.

The server runs as the ``postgres`` OS user (initdb and postgres refuse root), listens on
127.0.0.1 at a free port with its own socket directory, requires SCRAM-SHA-256 for every
connection, and logs every statement to a file so tests can search the log.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class PgServer:
    """A running server: where it listens and how to log in as its superuser."""

    host: str
    port: int
    superuser: str
    password: str
    data_dir: Path
    socket_dir: Path
    log_file: Path

    def log_text(self) -> str:
        """Return everything the server has logged so far."""
        return self.log_file.read_text(errors="replace")

    def connect(
        self, user: str | None = None, password: str | None = None, dbname: str = "postgres"
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """Open an autocommit TCP connection (so pg_hba's SCRAM rule applies)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=user or self.superuser,
            password=self.password if password is None else password,
            dbname=dbname,
            connect_timeout=5,
            autocommit=True,
        )


def _as_postgres(*argv: str) -> list[str]:
    """Prefix ``argv`` so that it execs in place as the postgres OS user with a clean env."""
    return [
        "setpriv",
        f"--reuid={OS_USER}",
        f"--regid={OS_USER}",
        "--init-groups",
        "--reset-env",
        "env",
        "PATH=/usr/bin:/bin",
        "LANG=C.UTF-8",
        *argv,
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _initdb(base: Path, superuser: str, password: str) -> Path:
    account = pwd.getpwnam(OS_USER)
    data_dir = base / "data"
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    os.chown(pwfile, account.pw_uid, account.pw_gid)
    pwfile.chmod(0o600)
    try:
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "initdb"),
                f"--pgdata={data_dir}",
                f"--username={superuser}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        pwfile.unlink()
    return data_dir


def _configure(
    data_dir: Path, socket_dir: Path, port: int, extra: Mapping[str, str] | None = None
) -> None:
    """Append our settings to postgresql.conf (so a reload never flags them as pending)."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(socket_dir),
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_statement": "all",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "password_encryption": "scram-sha-256",
        "fsync": "off",
        "full_page_writes": "off",
        "synchronous_commit": "off",
        "shared_buffers": "32MB",
        **(extra or {}),
    }
    lines = [f"{name} = '{_quote(value)}'" for name, value in settings.items()]
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\n# throwaway test server\n" + "\n".join(lines) + "\n")


def _quote(value: str) -> str:
    """A value inside single quotes in postgresql.conf (archive_command may hold quotes)."""
    return value.replace("'", "''")


def _start(data_dir: Path, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen(
            _as_postgres(str(PG_BIN / "postgres"), "-D", str(data_dir)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(proc: subprocess.Popen[bytes], server: PgServer) -> bool:
    """Wait until the server accepts logins; False if it exited (e.g. port taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with server.connect():
                return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL did not start:\n{server.log_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def as_postgres(*argv: str) -> list[str]:
    """`argv` run as the postgres OS user with a clean environment (initdb, pg_basebackup...)."""
    return _as_postgres(*argv)


@contextlib.contextmanager
def _serving(
    prefix: str,
    superuser: str,
    password: str,
    data_dir: Callable[[Path], Path],
    settings: Mapping[str, str] | None,
) -> Generator[PgServer, None, None]:
    """A private base directory and socket dir, then PostgreSQL started on `data_dir(base)`."""
    account = pwd.getpwnam(OS_USER)
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        os.chown(base, account.pw_uid, account.pw_gid)
        base.chmod(0o700)
        socket_dir = base / "run"
        socket_dir.mkdir()
        os.chown(socket_dir, account.pw_uid, account.pw_gid)
        data = data_dir(base)
        log_file = base / "postgresql.log"
        for _attempt in range(3):  # another process may grab the free port before we bind it
            port = _free_port()
            server = PgServer("127.0.0.1", port, superuser, password, data, socket_dir, log_file)
            _configure(data, socket_dir, port, settings)  # later lines win on a retry
            proc = _start(data, log_file)
            try:
                if _wait_ready(proc, server):
                    yield server
                    return
            finally:
                _stop(proc)
        raise RuntimeError(f"PostgreSQL could not start:\n{log_file.read_text()[-2000:]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def pg_server(
    superuser: str = "postgres", settings: Mapping[str, str] | None = None
) -> Generator[PgServer, None, None]:
    """Run a fresh PostgreSQL server for the duration of the ``with`` block.

    `settings` are appended to postgresql.conf before the first start (e.g. archive_mode).
    """
    password = secrets.token_urlsafe(24)
    with _serving(
        "pgtest-", superuser, password, lambda base: _initdb(base, superuser, password), settings
    ) as server:
        yield server


@contextlib.contextmanager
def run_data_dir(
    data_dir: Path, superuser: str, password: str, settings: Mapping[str, str] | None = None
) -> Generator[PgServer, None, None]:
    """Run PostgreSQL on an existing data directory (a restore, a base backup) until the block ends.

    The server gets a free port, its own socket directory and log file; `settings` are appended
    to postgresql.conf. The data directory is the caller's: it is left in place.
    """
    with _serving("pgrun-", superuser, password, lambda _: data_dir, settings) as server:
        yield server
