"""Counts what code does at the charm's process boundaries while it runs: Pebble, HTTP, SQL.

The boundaries are the libraries, not the charm: every public method of `ops.pebble.Client`
(what `ops.Container` calls), urllib3's connection pool (what `requests` sends through, so every
Patroni REST call) and psycopg's `connect`. Nothing here knows the charm's modules, so a
refactored charm is measured by the same code.

Only the thread that opened the meter, and threads started while it was open, are counted:
the substrate's own threads (Pebble notice watchers, Service routers) call the same libraries.
A boundary call made from inside another (`restart_services` waiting on its change) is one call.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator
from typing import Any
from unittest import mock

import ops
import psycopg
import urllib3.connectionpool

# How Pebble methods are grouped in the summary; the rest are "other".
PEBBLE_READS = frozenset({"pull", "list_files"})
PEBBLE_WRITES = frozenset({"push", "make_dir", "remove_path"})
PEBBLE_PLAN = frozenset({"add_layer", "replan_services"})
PEBBLE_SERVICES = frozenset(
    {"start_services", "stop_services", "restart_services", "autostart_services", "send_signal"}
)
# A restart is a Pebble service restart or Patroni's REST restart of PostgreSQL.
RESTART_CALLS = frozenset({"restart_services"})
RESTART_REQUESTS = frozenset({"POST /restart"})

_Counter = collections.Counter[str]


@dataclasses.dataclass
class Costs:
    """What one measured stretch of code did: calls by boundary, and its wall time."""

    pebble: _Counter = dataclasses.field(default_factory=_Counter)
    http: _Counter = dataclasses.field(default_factory=_Counter)  # "METHOD /path"
    sql_connects: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts grouped as the benchmark reports them, with the detail by call."""
        pebble = self.pebble

        def total(names: frozenset[str]) -> int:
            return sum(pebble[n] for n in names)

        grouped = PEBBLE_READS | PEBBLE_WRITES | PEBBLE_PLAN | PEBBLE_SERVICES | {"exec"}
        return {
            "pebble_file_reads": total(PEBBLE_READS),
            "pebble_file_writes": total(PEBBLE_WRITES),
            "pebble_exec": pebble["exec"],
            "pebble_plan_changes": total(PEBBLE_PLAN),
            "pebble_service_calls": total(PEBBLE_SERVICES),
            "pebble_other": sum(n for name, n in pebble.items() if name not in grouped),
            "http_requests": sum(self.http.values()),
            "sql_connects": self.sql_connects,
            "restarts": total(RESTART_CALLS) + sum(self.http[r] for r in RESTART_REQUESTS),
            "pebble_calls": dict(sorted(pebble.items())),
            "http_calls": dict(sorted(self.http.items())),
        }


class _Meter:
    """The counting state of one open meter."""

    def __init__(self) -> None:
        self.costs = Costs()
        # Thread objects, not idents: an ident can be reused by a thread started later.
        current = threading.current_thread()
        self._ignored = {t for t in threading.enumerate() if t is not current}
        self._depth = threading.local()
        self._lock = threading.Lock()

    def call(self, record: Callable[[], None], original: Callable[..., Any], *a: Any, **kw: Any):
        """Run a boundary call, recording it unless it is nested or on an ignored thread."""
        if threading.current_thread() in self._ignored:
            return original(*a, **kw)
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            with self._lock:
                record()
        self._depth.n = depth + 1
        try:
            return original(*a, **kw)
        finally:
            self._depth.n = depth


def _pebble_methods() -> list[str]:
    return [
        name
        for name, _ in inspect.getmembers(ops.pebble.Client, inspect.isfunction)
        if not name.startswith("_")
    ]


def _wrap_pebble(meter: _Meter, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*a: Any, **kw: Any) -> Any:
        return meter.call(lambda: meter.costs.pebble.update([name]), original, *a, **kw)

    return wrapper


def _request_key(method: str, url: str) -> str:
    return f"{method.upper()} {urllib.parse.urlsplit(url).path or '/'}"


def _wrap_urlopen(meter: _Meter, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def urlopen(pool: Any, method: str, url: str, *a: Any, **kw: Any) -> Any:
        key = _request_key(method, url)
        return meter.call(lambda: meter.costs.http.update([key]), original, pool, method, url,
                          *a, **kw)  # fmt: skip

    return urlopen


def _sql(meter: _Meter) -> None:
    meter.costs.sql_connects += 1


def _wrap_connect(meter: _Meter, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def connect(*a: Any, **kw: Any) -> Any:
        return meter.call(lambda: _sql(meter), original, *a, **kw)

    return connect


def _wrap_connect_method(
    meter: _Meter, function: Callable[..., Any]
) -> classmethod[Any, Any, Any]:
    def connect(cls: type[Any], *a: Any, **kw: Any) -> Any:
        return meter.call(lambda: _sql(meter), function, cls, *a, **kw)

    return classmethod(connect)


@contextlib.contextmanager
def meter() -> Generator[Costs]:
    """Count boundary calls until the block ends; the Costs (with `seconds`) fill in as it runs.

    Meters do not nest: open one at a time.
    """
    state = _Meter()
    pool = urllib3.connectionpool.HTTPConnectionPool
    connect_function = psycopg.Connection.__dict__["connect"].__func__
    with contextlib.ExitStack() as stack:
        for name in _pebble_methods():
            original = getattr(ops.pebble.Client, name)
            stack.enter_context(
                mock.patch.object(ops.pebble.Client, name, _wrap_pebble(state, name, original))
            )
        stack.enter_context(mock.patch.object(pool, "urlopen", _wrap_urlopen(state, pool.urlopen)))
        # `psycopg.connect` is bound to the class at import: both names are patched, and a
        # call through one does not go through the other.
        stack.enter_context(
            mock.patch.object(psycopg, "connect", _wrap_connect(state, psycopg.connect))
        )
        stack.enter_context(
            mock.patch.object(
                psycopg.Connection, "connect", _wrap_connect_method(state, connect_function)
            )
        )
        start = time.monotonic()
        try:
            yield state.costs
        finally:
            state.costs.seconds = time.monotonic() - start
