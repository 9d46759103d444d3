"""Long-running pod processes: each started under a reaping shim, watched through a status pipe.

The shim (substrate.host.shim) plays init for what the process orphans, as Pebble does in a real
container; this side reads the workload's PID and exit code from it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from substrate.host import netns

_SHIM = str(Path(__file__).with_name("shim.py"))


def spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path | None) -> PodProcess:
    """Start `argv` under a shim, with exactly `env`; stdout and stderr go to `log_path`."""
    read_fd, write_fd = os.pipe()
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - handed to the child
    try:
        shim = subprocess.Popen(
            [sys.executable, "-I", _SHIM, str(write_fd), "--", *argv],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        if log:
            log.close()
    return PodProcess(shim, read_fd, argv)


class PodProcess:
    """A process started in a pod, watched by a reaping shim (see substrate.host.shim).

    `pid` is the workload's own PID (host view); signals go straight to it.
    """

    def __init__(self, shim: subprocess.Popen[bytes], status_fd: int, argv: Sequence[str]):
        self.argv = tuple(argv)
        self._shim = shim
        self._fd: int | None = status_fd
        self._buffer = b""
        self.returncode: int | None = None
        line = self._next_line(timeout=10.0)
        if line is None or not line.startswith("started "):
            self.close(timeout=5.0)
            raise netns.SubstrateError(f"could not start {self.argv[0]!r} in the pod: {line}")
        self.pid = int(line.split()[1])

    def _next_line(self, timeout: float | None) -> str | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer and self._fd is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._fd], [], [], left)[0]:
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:
                os.close(self._fd)
                self._fd = None
            self._buffer += chunk
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def poll(self) -> int | None:
        """The exit code once the workload exited (negative: killed by that signal), else None."""
        return self.wait(timeout=0.0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the workload to exit; its exit code, or None if still running at the timeout."""
        while self.returncode is None:
            line = self._next_line(timeout)
            if line is None:
                if self._fd is None:  # the shim died before reporting: the pod was torn down
                    self.returncode = -signal.SIGKILL
                break
            if line.startswith("exited "):
                self.returncode = int(line.split()[1])
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send a signal to the workload, if it still runs."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (what Pebble sends on stop), then SIGKILL after `timeout`; the exit code."""
        self.send_signal(signal.SIGTERM)
        if self.wait(timeout) is None:
            self.send_signal(signal.SIGKILL)
        return self.wait(10.0)

    def close(self, timeout: float = 10.0) -> None:
        """Reap the shim once the workload and everything it orphaned are gone."""
        try:
            self._shim.wait(timeout)
        except subprocess.TimeoutExpired:
            self._shim.kill()
            self._shim.wait()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
