"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, started on a free port of 127.0.0.1
with its unix socket in that folder, stopped and removed afterwards.

Uses Debian's server binaries (`initdb`, `pg_ctl`) from PATH or /usr/lib/postgresql/<version>/bin, where Debian's
`postgresql` package puts them (tests/run.sh installs it when missing). PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` system user, which that package creates, in a folder it owns.

`postgres_server()` yields a PostgresServer; its `new_database()` makes an empty database and returns its URL
(`postgresql+psycopg://...`), so that each test can have a store of its own. Anything that goes wrong raises
PostgresUnavailable with the reason and the server's log. `postgres_for_tests()` is the body of a fixture: it turns
that into a failed test (never a skipped one: a run without PostgreSQL must not pass as a run with it).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_USER = "postgres"  # the system user Debian's package makes; the server runs as it when the tests are root
DATABASE_USER = "cae"


class PostgresUnavailable(RuntimeError):
    """The test server cannot be found, made or started; the message says why."""


def server_binaries() -> Path:
    """The folder holding initdb and pg_ctl: PATH's, else the newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).resolve().parent)):
        return Path(found).resolve().parent
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                       key=lambda path: int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit()
                       else 0)
    if installed:
        return Path(installed[-1]).parent
    raise PostgresUnavailable("PostgreSQL's initdb is neither on PATH nor under /usr/lib/postgresql/*/bin: install "
                              "Debian's `postgresql` package (tests/run.sh does)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A running test server; `new_database()` gives a fresh database's URL."""

    def __init__(self, folder: Path, port: int, password: str):
        self.folder = folder
        self.port = port
        self.password = password
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{DATABASE_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """An empty database of its own; its URL."""
        import psycopg

        with self._lock:
            name = f"store_{next(self._numbers)}"
        # FILE_COPY: a copy of the tiny template without writing it through the WAL (3-4x quicker to make).
        with psycopg.connect(host="127.0.0.1", port=self.port, user=DATABASE_USER, password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)


def _as_server_user(command: list[str]) -> list[str]:
    """The command as run for the server: as SERVER_USER when this process is root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace")[-3000:] if log is not None and log.is_file() else ""
        raise PostgresUnavailable(f"cannot {what}: {' '.join(command)} exited with {done.returncode}\n"
                                  f"{done.stdout[-2000:]}{done.stderr[-2000:]}\n{server_log}")


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the duration: password login over TCP on 127.0.0.1, the unix socket in its own
    folder; fsync and synchronous commits off (a test server: speed, not durability) unless `durable` (a real
    server's defaults, for measurements). Stopped (immediately) and removed at the end."""
    binaries = server_binaries()
    # Under /tmp itself, not pytest's 0700 folders: the server user must reach it when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="cae-postgres-"))
    data, log, password_file = folder / "data", folder / "server.log", folder / "password"
    password = secrets.token_hex(16)
    password_file.write_text(password + "\n")
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVER_USER)
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            raise PostgresUnavailable(f"running as root, PostgreSQL needs the {SERVER_USER!r} system user to run as "
                                      "(Debian's `postgresql` package creates it)") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        os.chown(password_file, account.pw_uid, account.pw_gid)
    started = False
    try:
        _run([str(binaries / "initdb"), "--pgdata", str(data), "--username", DATABASE_USER, "--pwfile",
              str(password_file), "--auth-local", "trust", "--auth-host", "scram-sha-256", "--encoding", "UTF8",
              "--no-locale", "--no-sync"], "make the database cluster")
        port = _free_port()
        options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
                   "-c max_connections=200")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run([str(binaries / "pg_ctl"), "start", "--pgdata", str(data), "--log", str(log), "--wait", "--timeout",
              "60", "-o", options], "start the server", log)
        started = True
        yield PostgresServer(folder, port, password)
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                _run([str(binaries / "pg_ctl"), "stop", "--pgdata", str(data), "--mode", "immediate", "--wait"],
                     "stop the server", log)
        shutil.rmtree(folder, ignore_errors=True)


def postgres_for_tests() -> Iterator[PostgresServer]:
    """A fixture's body: the server, or the test fails saying why PostgreSQL could not be had."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(postgres_server())
        except PostgresUnavailable as error:
            pytest.fail(f"PostgreSQL is needed for this test and could not be started: {error}", pytrace=False)
        yield server
