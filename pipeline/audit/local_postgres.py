"""A throwaway PostgreSQL server from the machine's packages (Debian's `postgresql`), for tests and benchmarks.

    LocalPostgres(bindir): initdb (trust auth, user trustreel) in a temporary folder -> pg_ctl start on a
                           free port -> database "audit"; stop/start (tests of an outage), create_database,
                           remove (stop and delete)

initdb refuses to run as root, so as root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class LocalPostgres:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="trustreel-pg-"))  # outside pytest's 0700 tree
        self.data = self.base / "data"
        self.port = free_port()  # never a fixed or pid-derived one: a stale server may hold it
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "trustreel")
        self.start()
        self.create_database("audit")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, capture_output=True)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.base} -h 127.0.0.1", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "audit") -> str:
        return f"postgresql+psycopg://trustreel@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "trustreel", name)
        return self.url(name)

    def remove(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def postgres_bindir() -> Path | None:
    """The newest installed server's bin folder, or None when no PostgreSQL server is installed."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
