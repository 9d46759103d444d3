"""Service output: per-service ring buffers for GET /v1/logs, plus log files and echo."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from substrate.pebble import timeutil

RING_ENTRIES = 2000


@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of service output."""

    seq: int
    time: datetime.datetime
    service: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The entry as GET /v1/logs streams it (one JSON object per line)."""
        return {
            "time": timeutil.format_time(self.time),
            "service": self.service,
            "message": self.message,
        }


class LogStore:
    """Keeps each service's recent output, appends it to `<dir>/<service>.log`, echoes it."""

    def __init__(self, log_dir: Path | None = None, echo: IO[str] | None = None) -> None:
        self._cond = threading.Condition()
        self._rings: dict[str, collections.deque[Entry]] = {}
        self._seq = 0
        self._dir = log_dir
        self._files: dict[str, IO[str]] = {}
        self._echo = echo
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    def write(self, service: str, message: str) -> None:
        """Record one line of a service's output."""
        moment = timeutil.now()
        with self._cond:
            self._seq += 1
            ring = self._rings.setdefault(service, collections.deque(maxlen=RING_ENTRIES))
            ring.append(Entry(self._seq, moment, service, message))
            line = f"{timeutil.log_prefix(moment)} [{service}] {message}\n"
            if self._dir is not None:
                self._file(service).write(line)
            if self._echo is not None:
                self._echo.write(line)
                self._echo.flush()
            self._cond.notify_all()

    def _file(self, service: str) -> IO[str]:
        handle = self._files.get(service)
        if handle is None and self._dir is not None:
            handle = (self._dir / f"{service}.log").open("a", buffering=1, encoding="utf-8")
            self._files[service] = handle
        assert handle is not None
        return handle

    def pump(self, service: str, stream: IO[bytes]) -> threading.Thread:
        """Copy a child's output, line by line, until EOF (in a background thread)."""

        def run() -> None:
            with stream:
                for raw in iter(stream.readline, b""):
                    self.write(service, raw.decode("utf-8", "replace").rstrip("\r\n"))

        thread = threading.Thread(target=run, name=f"logs-{service}", daemon=True)
        thread.start()
        return thread

    def _entries(self, services: Iterable[str] | None) -> list[Entry]:
        wanted = set(services) if services else set(self._rings)
        found = [entry for name in wanted for entry in self._rings.get(name, ())]
        return sorted(found, key=lambda entry: entry.seq)

    def recent(self, services: Iterable[str] | None, n: int) -> list[Entry]:
        """The last n entries (all if n < 0) of the given services (all if None)."""
        with self._cond:
            entries = self._entries(services)
        return entries if n < 0 else entries[-n:] if n else []

    def follow(
        self, services: Iterable[str] | None, after: int, timeout: float
    ) -> tuple[list[Entry], int]:
        """Entries newer than sequence `after` (waiting up to `timeout`), and the newest sequence."""
        services = list(services) if services else None
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after, timeout=timeout)
            return [entry for entry in self._entries(services) if entry.seq > after], self._seq

    def last_seq(self) -> int:
        """Sequence number of the newest entry."""
        with self._cond:
            return self._seq

    def tail(self, service: str, since_seq: int, lines: int = 20) -> list[str]:
        """The service's last lines of output newer than a sequence number."""
        with self._cond:
            ring = list(self._rings.get(service, ()))
        return [entry.message for entry in ring if entry.seq > since_seq][-lines:]

    def close(self) -> None:
        """Close the log files."""
        with self._cond:
            for handle in self._files.values():
                handle.close()
            self._files.clear()
            self._cond.notify_all()
