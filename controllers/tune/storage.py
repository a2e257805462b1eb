"""Where a study lives: a local SQLite file, Optuna's journal file (a shared file system) or PostgreSQL (several
machines); and which of its RUNNING trials belong to workers that are gone.

A storage is named by one string (``armlab tune --storage``):

    sqlite:///runs/tune/STUDY.db        the default: one file, workers on this machine
    journal:PATH  or  PATH.log          Optuna's append-only journal file: workers on machines sharing PATH
    postgresql://USER:PASS@HOST/DB      a PostgreSQL database: workers anywhere that reach HOST

A worker that dies in the middle of a trial leaves it RUNNING. `fail_dead_trials` marks FAIL every RUNNING trial
whose worker ran on this host and no longer exists (its pid is gone, or now belongs to a newer process); on SQLite
and PostgreSQL Optuna's heartbeat also fails the trials of workers on other hosts once they have been silent for
`GRACE_S` seconds. A FAIL trial does not count toward the study's budget: a worker runs another in its place.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from pathlib import Path

from robot_env.io.atomic import make_dirs
from robot_env.io.errors import ConfigError, ParamError

HEARTBEAT_S = 5  #: a RUNNING trial's worker writes a heartbeat this often (SQLite, PostgreSQL)
GRACE_S = 30  #: ... and its trial is failed by the next worker that looks after this long without one
_KINDS = "sqlite:///FILE, journal:FILE (or a FILE.log) or postgresql://USER@HOST/DB"


def storage_url(spec: str | None, folder: str | Path, study_name: str) -> str:
    """The storage ``spec`` in its canonical form: ``sqlite:///...``, ``journal:PATH`` or ``postgresql://...``; None
    gives ``sqlite:///FOLDER/STUDY.db``."""
    if spec is None or not str(spec).strip():
        return f"sqlite:///{Path(folder) / f'{study_name}.db'}"
    spec = str(spec).strip()
    if spec.startswith("journal:"):
        path = spec[len("journal:"):]
        if not path:
            raise ParamError("storage", f"{{name}} journal: needs a file, as in journal:runs/tune/study.log; "
                                        f"got {spec!r}.")
        return f"journal:{path}"
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if not scheme and spec.endswith(".log"):
        return f"journal:{spec}"
    if scheme == "sqlite" and spec.startswith("sqlite:///") and len(spec) > len("sqlite:///"):
        return spec
    if scheme in ("postgresql", "postgres"):  # psycopg2 (a dependency); SQLAlchemy 2.1 would pick psycopg 3
        return "postgresql+psycopg2" + spec[len(scheme):]
    if scheme.startswith("postgresql+"):
        return spec
    raise ParamError("storage", f"{{name}} must be {_KINDS}, got {spec!r}.")


def describe(url: str) -> str:
    """``url`` without its password, for messages."""
    if url.startswith("postgresql"):
        with contextlib.suppress(Exception):
            from sqlalchemy.engine import make_url

            return make_url(url).render_as_string(hide_password=True)
    return url


def open_storage(url: str):
    """The Optuna storage for a canonical ``url`` (`storage_url`); a file storage's folder is created."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = Path(url[len("journal:"):])
        make_dirs(path.parent)
        # a worker killed while appending leaves the lock file behind: the others take it over after 10 s
        lock = JournalFileOpenLock(str(path), grace_period=10)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    if url.startswith("sqlite:///"):
        make_dirs(Path(url[len("sqlite:///"):]).parent)
        engine = {"connect_args": {"timeout": 120}}  # several local workers wait for the file's lock
    else:
        engine = {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
        except Exception as exc:  # sqlalchemy's OperationalError and kin: the server is down, the name is wrong
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200].rstrip(".")
            raise ConfigError(f"cannot open the study storage {describe(url)} ({reason}); is the database server "
                              f"running and the URL right?") from None


# -- the workers' identity, and trials whose worker is gone ----------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux /proc), or None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended; field 22 of stat is the start time


def worker_identity() -> dict:
    """This process as trial user attributes: ``host``, ``pid`` and its start time (to tell a reused pid)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _gone(attrs: dict) -> bool:
    """Whether the worker described by a trial's user attributes ran on this host and no longer exists."""
    if attrs.get("host") != socket.gethostname() or not isinstance(attrs.get("pid"), int):
        return False
    pid = attrs["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        return False
    now = _start_time(pid)
    return now is None and Path("/proc").is_dir() or attrs.get("started") not in (None, now)


def fail_dead_trials(study) -> list[int]:
    """Mark FAIL the RUNNING trials of workers that are gone (this host by pid; others by Optuna's heartbeat, where
    the storage has one). Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _gone(t.user_attrs):
            with contextlib.suppress(RuntimeError, ValueError):  # another worker got there first
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                failed.append(t.number)
    with warnings.catch_warnings():  # the heartbeat of workers on other hosts (a no-op on journal storage)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return failed


__all__ = ["GRACE_S", "HEARTBEAT_S", "describe", "fail_dead_trials", "open_storage", "storage_url",
           "worker_identity"]
