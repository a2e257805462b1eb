"""A throwaway PostgreSQL server for the tuning test and benchmark: initdb + pg_ctl under a temporary folder.

Debian's ``postgresql`` package puts its programs in /usr/lib/postgresql/VERSION/bin (not on PATH); the newest
version there is used, else ``pg_ctl`` on PATH. PostgreSQL refuses to run as root, so as root the server runs as
the ``postgres`` user the package creates. It listens on 127.0.0.1 at a free port with trust authentication and
fsync off (a test server: fast, nothing to keep), and `stop` removes everything.

    with throwaway_postgres() as url:      # postgresql://postgres@127.0.0.1:PORT/postgres
        ...
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL programs here, or the server would not start (the message says which and why)."""


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, else the one of pg_ctl on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()])
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary folder: `start` returns its URL, `stop` ends it and removes the folder."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root: Path | None = None
        self.url: str | None = None
        self._user = None

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        demote = None
        if self._user is not None:
            uid, gid = self._user.pw_uid, self._user.pw_gid

            def demote() -> None:
                os.setgid(gid)
                os.setuid(uid)

        env = dict(os.environ, LC_ALL="C", LANG="C")
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, preexec_fn=demote, env=env,
                              cwd=str(self.root))

    def start(self) -> str:
        if self.bin is None:
            raise PostgresUnavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl and no "
                                      "pg_ctl on PATH): apt-get install postgresql")
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, PostgreSQL needs the 'postgres' user that Debian's "
                                          "postgresql package creates, and there is none") from None
        self.root = Path(tempfile.mkdtemp(prefix="armlab-pg-"))
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        data, port = self.root / "data", _free_port()
        out = self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if out.returncode:
            self.stop()
            raise PostgresUnavailable(f"initdb failed: {out.stderr.strip()[-500:]}")
        opts = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        out = self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-o", opts,
                        "-w", "-t", "60", "start", timeout=90)
        if out.returncode:
            log = (self.root / "server.log").read_text()[-500:] if (self.root / "server.log").is_file() else ""
            self.stop()
            raise PostgresUnavailable(f"pg_ctl start failed: {(out.stderr or out.stdout).strip()[-300:]} {log}")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self.url

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = self.url = None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A running throwaway server's URL for the ``with`` block; stopped and removed afterwards."""
    server = ThrowawayPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


__all__ = ["PostgresUnavailable", "ThrowawayPostgres", "postgres_bin", "throwaway_postgres"]
