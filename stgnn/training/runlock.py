"""An exclusive lock on a run folder, so that two processes never write the same run.

The lock is an advisory ``fcntl.flock`` on ``<run>/.lock``, whose content is the holder's
pid and host.  The kernel drops the lock when its holder exits for any reason (including
SIGKILL), so a lock file left behind by a dead process is stale by construction and is
simply taken over; the pid in it only serves the error message.

Written here rather than with the ``filelock`` package because the message must name the
holder's pid: ``filelock`` truncates the lock file on every acquisition attempt, so a waiting
process would erase the holder's pid before it could be read.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "RunFolderLocked", "RunLock"]

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RunFolderLocked(ValueError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    Use it as a context manager around everything that writes into the folder.

    Args:
        folder: The run folder (created if missing).

    Raises:
        RunFolderLocked: On :meth:`acquire`, when another process holds the lock; the
            message names the folder and the holder's pid and host.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, RunLock(d) as lock:
        ...     lock.held
        True
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock without waiting (see the class doc for the error)."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # never O_TRUNC: the holder's pid is in it
        if fcntl is None:  # pragma: no cover - Windows
            warnings.warn(f"{self.folder}: no fcntl on this platform; the run folder is not locked "
                          "against a second process", stacklevel=2)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").split()
                os.close(fd)
                who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
                raise RunFolderLocked(
                    f"{self.folder}: run folder is in use by {who} (lock file {self.path}); wait for "
                    "that run to end or stop it, or write this run into another --output"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the lock file stays; an unheld lock file is harmless)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
