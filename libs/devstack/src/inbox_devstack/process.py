"""Process helpers: pid files, identity checks, background start and group stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import DevstackError, MissingToolError

log = logging.getLogger(__name__)

T = TypeVar("T")


def require_tool(tool: str, purpose: str) -> str:
    """Return the absolute path of ``tool`` or raise :class:`MissingToolError`."""
    path = shutil.which(tool)
    if path is None:
        raise MissingToolError(tool, purpose)
    return path


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        pid = int(text.split()[0])
    except (ValueError, IndexError):
        log.warning("ignoring malformed pid file %s", pid_file)
        return None
    return pid if pid > 0 else None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def remove_pid(pid_file: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is a zombie child of this process (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    # The state field follows the parenthesised command name.
    state = stat.rsplit(")", 1)[-1].split()[0:1]
    return state != ["Z"]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def matches(pid: int, predicate: Callable[[list[str]], bool]) -> bool:
    """True if ``pid`` is alive and its command line satisfies ``predicate``.

    This guards against a pid from a stale pid file having been recycled by an
    unrelated process: such a pid is never signalled.
    """
    if not is_alive(pid):
        return False
    args = cmdline(pid)
    return bool(args) and predicate(args)


def spawn(
    args: Sequence[str],
    *,
    log_file: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``args`` in the background in a new session, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"\n===== devstack: starting at {stamp}: {' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (we start every process as a session leader)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except OSError as exc:  # pragma: no cover - e.g. EPERM
        if exc.errno != errno.ESRCH:
            raise


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds while only zombies remain: check the leader itself.
    return is_alive(pgid) or _any_live_member(pgid)


def _any_live_member(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # fields: state ppid pgrp ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def stop(pid: int, *, name: str, timeout: float = 30.0) -> None:
    """SIGTERM the process group of ``pid``, wait up to ``timeout`` s, then SIGKILL it."""
    log.info("stopping %s (pid %d) with SIGTERM", name, pid)
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            log.info("%s (pid %d) stopped", name, pid)
            return
        time.sleep(0.2)
    log.warning("%s (pid %d) still running after %.0fs: sending SIGKILL", name, pid, timeout)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.1)
    raise DevstackError(f"{name} (pid {pid}) survived SIGKILL")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30, since: int = 0) -> str:
    """Last ``lines`` lines of ``path`` (from byte offset ``since``), or a note if absent."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            start = max(since, size - 64 * 1024)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return f"(log file {path} does not exist)"
    text = data.decode(errors="replace").splitlines()
    return "\n".join(text[-lines:])


MAX_LOG_BYTES = 50 * 1024 * 1024


def rotate_log(path: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
    """Move ``path`` to ``<path>.1`` (replacing it) once it grew past ``max_bytes``."""
    if file_size(path) > max_bytes:
        path.replace(path.with_name(path.name + ".1"))
        log.info("rotated %s to %s.1", path, path.name)


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Temporarily raise a noisy library logger's level (e.g. aiokafka while polling)."""
    logger = logging.getLogger(name)
    previous = logger.level
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, also when called from a thread that already runs an event loop.

    The public API is blocking; inside a running loop (e.g. an async pytest fixture) the
    coroutine runs on a short-lived helper thread with its own loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
