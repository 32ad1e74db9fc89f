"""One writer per workdir: ``WORKDIR/.lock`` holds the owner's pid, host and start time.

Two runs writing one workdir interleave checkpoints and metrics into a run that neither of
them made. The lock is created atomically (``O_EXCL``) before anything else is written; a
lock left by a process that died on this host is taken over (with a message), one held by a
live process or another host is refused, and the lock is removed when the run ends, however
it ends.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another run owns the workdir (one-line message naming its pid and host)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class WorkdirLock:
    """Context manager holding ``WORKDIR/.lock`` for this process."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self.owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._held = False

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock, taking over a stale one; raises WorkdirLockedError if it is held."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.owner, f)
            self._held = True
            return
        raise WorkdirLockedError(f"could not take {self.path}")

    def _take_over_if_stale(self) -> None:
        try:
            with open(self.path) as f:
                other = json.load(f)
            pid, host = int(other["pid"]), str(other["host"])
        except (OSError, ValueError, KeyError, TypeError):
            other, pid, host = {}, None, None  # torn or foreign: the writer died mid-write
        if pid is not None and (host != self.owner["host"] or _pid_alive(pid)):
            raise WorkdirLockedError(
                f"{os.path.dirname(self.path)} is in use by pid {pid} on {host} (since "
                f"{other.get('started', '?')}); wait for it, stop it, or use a new --workdir "
                f"(remove {self.path} only if that process is gone)"
            )
        print(
            f"jaxfm: taking over stale lock {self.path} (pid {pid} on {host} is gone)",
            file=sys.stderr,
            flush=True,
        )
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Removes the lock if this process holds it."""
        if self._held:
            self._held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
