"""The per-process shim: starts one pod process and reaps it and every process it orphans.

Run as `python3 -I shim.py <status-fd> -- <argv...>` (standard library only). The shim is a child
subreaper, the role Pebble plays as the container's init: Patroni deliberately orphans the
postmaster so that "init" reaps it, and without a reaper every PostgreSQL restart would leave a
zombie behind. The workload is spawned in its own session, so its PID is the workload's own.

It writes `started <pid>` then `exited <code>` (negative for a signal) on the status descriptor,
and exits itself once no descendant is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _report(fd: int, line: str) -> None:
    # Nobody may listen any more: keep reaping regardless.
    with contextlib.suppress(BrokenPipeError):
        os.write(fd, f"{line}\n".encode())


def main(args: list[str]) -> int:
    """Spawn `args[2:]` (after `--`), report on the descriptor in `args[0]`, reap until alone."""
    status_fd = int(args[0])
    argv = args[2:]
    # The workload must not inherit the status pipe: only the shim reports on it.
    os.set_inheritable(status_fd, False)
    _become_subreaper()
    try:
        pid = os.posix_spawnp(argv[0], argv, dict(os.environ), setsid=True)
    except OSError as e:
        _report(status_fd, f"failed {e}")
        return 127
    _report(status_fd, f"started {pid}")
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        if child == pid:
            _report(status_fd, f"exited {os.waitstatus_to_exitcode(status)}")
            os.close(status_fd)
            status_fd = -1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
