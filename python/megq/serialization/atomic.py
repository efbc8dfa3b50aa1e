"""Atomic file replacement for ``megq.save``: write a temporary file beside the target, fsync it, rename it over the
target. Readers see the old file or the new one, never a mix; a failed or interrupted save removes its temporary.

Symlinks: a target that is a symlink is followed, like ``open(path, "wb")`` does: the file it points to is replaced
and the link stays a link. Permissions: a new file gets ``0o666 & ~umask``, an existing file keeps its mode.
"""
from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from typing import IO, Callable

__all__ = ["atomic_write", "TEMP_PREFIX"]

TEMP_PREFIX = ".megq-save-"


class _Terminated(BaseException):
    """Raised inside a save by the temporary SIGTERM handler, so the cleanup path runs before the process ends."""


def _current_umask() -> int:
    # /proc/self/status reports the umask without changing it (os.umask can only be read by setting it, which
    # races with other threads creating files).
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _resolve_target(path: str) -> str:
    """The file to replace: ``path``, or the file a symlink chain at ``path`` ends at (which may not exist yet)."""
    if os.path.islink(path):
        return os.path.realpath(path)
    return path


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    target = _resolve_target(os.path.abspath(path))
    directory = os.path.dirname(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    # In the main thread, SIGTERM with its default action would end the process without running cleanup; turn it
    # into an exception for the duration of the save, then re-deliver it.
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                def _on_term(signum: int, frame: object) -> None:
                    raise _Terminated()

                old_handler = signal.signal(signal.SIGTERM, _on_term)
        except (ValueError, OSError):
            old_handler = None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        try:  # make the rename itself durable
            dfd = os.open(directory, os.O_RDONLY)
        except OSError:
            dfd = None
        if dfd is not None:
            try:
                os.fsync(dfd)
            except OSError:
                pass
            finally:
                os.close(dfd)
    except _Terminated:
        _remove(tmp)
        tmp = None
        _restore(old_handler)
        old_handler = None
        os.kill(os.getpid(), signal.SIGTERM)  # default action again: the process ends as it would have
        raise
    finally:
        _remove(tmp)
        _restore(old_handler)


def _remove(tmp: "str | None") -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _restore(old_handler: object) -> None:
    if old_handler is not None:
        signal.signal(signal.SIGTERM, old_handler)
