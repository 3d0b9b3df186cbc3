"""One `raysweep run` per study store at a time.

The lock is an `flock` on `<root>/run.lock`, held by the driver for the whole run; the file says who holds it
(pid, host, start time, command) so a second run can name them. The kernel arbitrates, so there is no race between
two runs starting together, and a lock whose holder died is free at once without guessing from pids or clocks:

- same host: the kernel drops an flock when its process exits, SIGKILL included;
- another host (the store on NFS): Linux maps flock to NFS byte-range locks, which the server releases when the
  dead client's lease runs out (NFSv4: 90 s by default). A mount with `nolock` keeps locks local to each host and
  so cannot stop two hosts; `local_lock=` and `nolock` mounts are therefore not supported for shared stores.

A lock file left behind by a dead holder is simply locked again and overwritten. The holder removes the file when
it finishes; a taker that locked a file just removed re-checks the inode and retries, so two takers never both win.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "run.lock"


class StudyLocked(ValueError):
    """Another live process runs this study (the CLI prints it as one line, exit code 2)."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str
    command: str

    @staticmethod
    def me() -> Holder:
        return Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), " ".join(sys.argv))

    @staticmethod
    def read(fd: int) -> Holder | None:
        """The holder a lock file names; None while it is still being written (or was never written)."""
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            return Holder(**json.loads(os.read(fd, 1 << 16) or b"null"))
        except (TypeError, ValueError):
            return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _acquire(path: Path, hint: str) -> int:
    """An fd of the lock file, flock-ed by this process; StudyLocked naming the holder if another one has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.read(fd)
            os.close(fd)
            who = (f"pid {holder.pid} on host {holder.host}, since {holder.started}" if holder
                   else "a process that is just starting")
            raise StudyLocked(f"{path.parent}: this study is already running ({who}; lock {path}); "
                              f"follow it with `{hint}` or wait until it finishes") from None
        if _same_file(fd, path):  # not a file its previous holder removed between our open and our flock
            return fd
        os.close(fd)


@contextmanager
def study_lock(root: Path, hint: str = "raysweep status <study>") -> Iterator[Holder]:
    """Hold the study lock of store `root` for the body; `hint` is the command the refusal suggests."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = _acquire(path, hint)
    me = Holder.me()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me.__dict__).encode(), 0)
        os.fsync(fd)
        yield me
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a waiting taker then sees a removed inode and retries
        os.close(fd)
