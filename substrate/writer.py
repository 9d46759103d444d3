"""A continuous writer for chaos runs: which rows were acknowledged, when, and did they survive.

What "acknowledged" means here (the figures are only as good as this definition):

- An id is *acked* only when its autocommit INSERT returned success to this client with no
  WARNING attached. How durable that is depends on the server's settings at that moment
  (`synchronous_commit`, `synchronous_standby_names`); each session records the former.
- A commit whose wait for the synchronous standby was cancelled (statement_timeout, a cancel
  request) still returns success, with a WARNING that it "has already committed locally, but
  might not have been replicated". Such an id is *uncertain*, never acked.
- An id whose statement was sent but whose outcome never came back (connection lost, client
  timeout, FATAL) is *uncertain*: it may or may not be in the table.
- An id the server refused with an ERROR on a healthy connection (read-only, statement
  timeout) is *rejected*: an ERROR in autocommit means the transaction rolled back.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import socket
import threading
import time
from array import array
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Literal

import psycopg
from psycopg import conninfo as pgconninfo
from psycopg import errors, sql

Outcome = Literal["uncertain", "rejected", "no-write"]
MAX_ERRORS_KEPT = 5000  # a long outage retries every 50-200 ms; keep memory bounded
_REPR_IDS = 10
# Where a session landed and what a commit there promises; a replica cannot take writes.
_PROBE = sql.SQL(
    "SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local'),"
    " current_setting('synchronous_commit'), pg_is_in_recovery()"
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ids_repr(ids: Sequence[int]) -> str:
    head = ", ".join(str(i) for i in ids[:_REPR_IDS])
    return f"[{head}, ... {len(ids) - _REPR_IDS} more]" if len(ids) > _REPR_IDS else f"[{head}]"


@dataclass(frozen=True)
class WriteError:
    """One failure: when (monotonic and wall clock), on which id (None while connecting), why."""

    at: float
    wall: float
    id: int | None
    phase: Literal["connect", "write"]
    kind: str
    message: str
    outcome: Outcome


@dataclass(frozen=True)
class Outage:
    """A gap between acks: from the last ack before it to the first ack after it.

    `end` is None when writes had not resumed by the time the writer stopped; `duration_s` is
    then a lower bound (up to the stop).
    """

    start: float
    end: float | None
    duration_s: float
    start_wall: float


@dataclass(frozen=True)
class Session:
    """One successful connection: when, to which server, with which commit guarantee."""

    at: float
    server: str
    synchronous_commit: str


@dataclass(frozen=True)
class WriterReport:
    """What a writer run acknowledged and when; monotonic times unless a field says wall."""

    table: str
    acked: int
    acked_ranges: tuple[tuple[int, int], ...]  # inclusive runs of acked ids
    uncertain: tuple[int, ...]
    rejected: int
    errors: tuple[WriteError, ...]
    errors_dropped: int
    started: float
    stopped: float
    first_ack: float | None
    last_ack: float | None
    first_ack_wall: float | None
    last_ack_wall: float | None
    outage_threshold_s: float
    outages: tuple[Outage, ...]
    max_outage_s: float
    # The longest single connect or statement: the writer never froze for longer.
    longest_block_s: float
    sessions: tuple[Session, ...]
    ack_times: array[float] = field(repr=False, compare=False)

    def acked_ids(self) -> Iterator[int]:
        """Every acked id, ascending."""
        for lo, hi in self.acked_ranges:
            yield from range(lo, hi + 1)

    def outage_around(self, t: float) -> float | None:
        """The gap containing monotonic time `t`: last ack at or before it to first ack after it.

        None when there is no ack before `t`, or none after it (writes never resumed).
        A fault that interrupted nothing gives about one interval.
        """
        i = bisect.bisect_right(self.ack_times, t)
        if i == 0 or i == len(self.ack_times):
            return None
        return self.ack_times[i] - self.ack_times[i - 1]

    def outage_during(self, t0: float, t1: float) -> float | None:
        """The longest gap between acks that overlaps [t0, t1] (monotonic times).

        For a fault injected at t0 whose injection returned at t1 (a switchover that blocks until
        the new primary is in place, a kill that takes a moment to land): from the last ack
        before the outage to the first ack after it, wherever in the window the outage fell.
        None when there is no ack before t0 or none after t1.
        """
        first = bisect.bisect_right(self.ack_times, t0)
        last = bisect.bisect_right(self.ack_times, t1)
        if first == 0 or last >= len(self.ack_times):
            return None
        # One gap more: a commit in flight when the fault landed can still be acked after t1.
        end = min(last + 2, len(self.ack_times))
        return max(self.ack_times[k] - self.ack_times[k - 1] for k in range(first, end))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (without the per-ack times)."""
        data = asdict(dataclasses.replace(self, ack_times=array("d")))
        del data["ack_times"]
        data["acked_ranges"] = [list(r) for r in self.acked_ranges]
        data["uncertain"] = list(self.uncertain)
        return data


def _options(base: str, settings: Mapping[str, str]) -> str:
    """Append `-c name=value` switches to a libpq `options` string (spaces escaped)."""

    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(" ", "\\ ")

    switches = [f"-c {esc(name)}={esc(value)}" for name, value in settings.items()]
    return " ".join([base, *switches]).strip()


class _Watchdog:
    """Shuts down a connection's socket when a statement outlives its deadline.

    A SIGSTOPped or partitioned server keeps the TCP connection alive (its kernel still
    acknowledges), so neither statement_timeout nor keepalives fire: only the client can stop
    waiting. Shutting the socket down makes libpq's blocked read return at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._deadline = 0.0
        self._fired = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="writer-watchdog", daemon=True)
        self._thread.start()

    def arm(self, fd: int, timeout: float) -> None:
        with self._cond:
            self._fd, self._deadline, self._fired = fd, time.monotonic() + timeout, False
            self._cond.notify()

    def disarm(self) -> bool:
        """Stop watching; True if the deadline had fired."""
        with self._cond:
            self._fd = None
            return self._fired

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                remaining = self._deadline - time.monotonic()
                if self._fd is None or remaining > 0:
                    self._cond.wait(None if self._fd is None else remaining)
                    continue
                # The fd stays valid while armed: its owner is blocked in the statement.
                with contextlib.suppress(OSError):
                    dup = socket.fromfd(self._fd, socket.AF_INET, socket.SOCK_STREAM)
                    with dup:
                        dup.shutdown(socket.SHUT_RDWR)
                self._fd, self._fired = None, True


def _guarded(
    watchdog: _Watchdog,
    timeout: float,
    conn: psycopg.Connection[tuple[Any, ...]],
    query: sql.SQL | sql.Composed,
    args: Sequence[Any] | None = None,
) -> tuple[Any, ...] | None:
    """Run one statement under `watchdog`; a fired deadline raises OperationalError."""
    watchdog.arm(conn.pgconn.socket, timeout)
    try:
        cur = conn.execute(query, args)
        row = cur.fetchone() if cur.description else None
    except psycopg.Error as e:
        if watchdog.disarm():
            raise psycopg.OperationalError(f"no answer within {timeout}s") from e
        raise
    if watchdog.disarm():
        conn.close()  # the answer came, but the socket was shut down just after it
    return row


class ContinuousWriter:
    """Insert one row per `interval` with increasing ids from a background thread.

    `conninfo` and `params` are libpq connection parameters (host, port, user, password,
    dbname...). The writer adds connect_timeout, keepalives, tcp_user_timeout and a
    statement_timeout unless given, and enforces `io_timeout` on every statement itself.
    On any error it records it, reconnects after a 50-200 ms backoff and goes on with the next
    id. One writer per table: ids start after the table's current maximum.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        table: str = "writer_probe",
        interval: float = 0.01,
        connect_timeout: int = 2,
        statement_timeout: float = 2.0,
        io_timeout: float | None = None,
        backoff: tuple[float, float] = (0.05, 0.2),
        outage_threshold: float = 0.5,
        session_settings: Mapping[str, str] | None = None,
        **params: Any,
    ) -> None:
        self.table = table
        self.interval = interval
        self.io_timeout = io_timeout if io_timeout is not None else statement_timeout + 1.0
        self.backoff = backoff
        self.outage_threshold = outage_threshold
        self.base_conninfo = pgconninfo.make_conninfo(conninfo, **params)
        given = pgconninfo.conninfo_to_dict(self.base_conninfo)
        settings = {"statement_timeout": f"{round(statement_timeout * 1000)}ms"}
        settings.update(session_settings or {})
        defaults: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "keepalives": 1,
            "keepalives_idle": 1,
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": round(self.io_timeout * 1000),
            "application_name": "continuous-writer",
        }
        extra = {k: v for k, v in defaults.items() if k not in given}
        extra["options"] = _options(str(given.get("options", "")), settings)
        self._conninfo = pgconninfo.make_conninfo(self.base_conninfo, **extra)
        self._insert = sql.SQL("INSERT INTO {} (id) VALUES (%s)").format(sql.Identifier(table))
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: _Watchdog | None = None
        self._report: WriterReport | None = None
        self._next_id = 1
        self._started = 0.0
        self._started_wall = 0.0
        self._stop_called = 0.0
        self._ack_times: array[float] = array("d")
        self._ack_walls: array[float] = array("d")
        self._run_lo: list[int] = []
        self._run_hi: list[int] = []
        self._uncertain: list[int] = []
        self._rejected = 0
        self._errors: list[WriteError] = []
        self._errors_dropped = 0
        self._sessions: list[Session] = []
        self._longest_block = 0.0
        self._warning: str | None = None

    def __repr__(self) -> str:
        return f"ContinuousWriter(table={self.table!r}, acked={self.acked_count})"

    def __enter__(self) -> ContinuousWriter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control ------------------------------------------------------------------------------

    def start(self, setup_timeout: float = 30.0) -> None:
        """Create the table if missing and start writing.

        Raises psycopg.Error when the table cannot be set up within `setup_timeout`.
        """
        self._watchdog = _Watchdog()
        try:
            self._setup(setup_timeout)
        except BaseException:
            self._watchdog.close()
            raise
        self._started, self._started_wall = time.monotonic(), time.time()
        self._thread = threading.Thread(target=self._run, name="continuous-writer", daemon=True)
        self._thread.start()

    def stop(self) -> WriterReport:
        """Stop writing (within one statement or connect timeout) and return the report."""
        if self._report is None:
            self._stop_called = time.monotonic()
            self._stopping.set()
            if self._thread is not None:
                self._thread.join()
            if self._watchdog is not None:
                self._watchdog.close()
            self._report = self.report()
        return self._report

    @property
    def acked_count(self) -> int:
        """How many ids have been acknowledged so far."""
        with self._lock:
            return len(self._ack_times)

    def wait_for_acks(self, count: int, timeout: float) -> bool:
        """Block until at least `count` acks in total; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._ack_times) >= count, timeout)

    def wait_for_ack_after(self, t: float, timeout: float) -> bool:
        """Block until an ack later than monotonic time `t` (writes resumed); False on timeout."""
        with self._lock:
            return self._lock.wait_for(
                lambda: bool(self._ack_times) and self._ack_times[-1] > t, timeout
            )

    def report(self) -> WriterReport:
        """A snapshot of the figures (final once stopped)."""
        with self._lock:
            now = self._stop_called or time.monotonic()
            times, walls = array("d", self._ack_times), array("d", self._ack_walls)
            outages = self._outages(times, walls, now)
            return WriterReport(
                table=self.table,
                acked=len(times),
                acked_ranges=tuple(zip(self._run_lo, self._run_hi, strict=True)),
                uncertain=tuple(self._uncertain),
                rejected=self._rejected,
                errors=tuple(self._errors),
                errors_dropped=self._errors_dropped,
                started=self._started,
                stopped=now,
                first_ack=times[0] if times else None,
                last_ack=times[-1] if times else None,
                first_ack_wall=walls[0] if walls else None,
                last_ack_wall=walls[-1] if walls else None,
                outage_threshold_s=self.outage_threshold,
                outages=outages,
                max_outage_s=max((o.duration_s for o in outages), default=0.0),
                longest_block_s=self._longest_block,
                sessions=tuple(self._sessions),
                ack_times=times,
            )

    def _outages(self, times: array[float], walls: array[float], now: float) -> tuple[Outage, ...]:
        """Gaps between acks over the threshold, plus an unrecovered one at the end, if any.

        With no ack at all, the whole run is one unrecovered outage from the start.
        """
        found = [
            Outage(times[i - 1], times[i], times[i] - times[i - 1], walls[i - 1])
            for i in range(1, len(times))
            if times[i] - times[i - 1] > self.outage_threshold
        ]
        last, last_wall = (times[-1], walls[-1]) if times else (self._started, self._started_wall)
        if now - last > self.outage_threshold:
            found.append(Outage(last, None, now - last, last_wall))
        return tuple(found)

    # -- the loop -----------------------------------------------------------------------------

    def _setup(self, timeout: float) -> None:
        create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY,"
            " written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(sql.Identifier(self.table))
        highest = sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier(self.table))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    self._guarded(conn, create)
                    row = self._guarded(conn, highest)
                    self._next_id = int(row[0]) + 1 if row else 1
                    return
            except psycopg.Error:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(self.backoff[1])

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        delay = self.backoff[0]
        due = time.monotonic()
        while not self._stopping.is_set():
            if conn is None or conn.closed:
                conn = self._connect()
            if conn is not None and self._write(conn):
                delay = self.backoff[0]
                due = max(due + self.interval, time.monotonic())
                self._stopping.wait(due - time.monotonic())
                continue
            if conn is not None:
                conn.close()
                conn = None
            self._stopping.wait(delay)  # never a busy loop, even when refusals are instant
            delay = min(delay * 2, self.backoff[1])
            due = time.monotonic()
        if conn is not None:
            conn.close()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]] | None:
        """Open a session on a writable server; None (error recorded) otherwise."""
        t0 = time.monotonic()
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
            conn.add_notice_handler(self._on_notice)
            row = self._guarded(conn, _PROBE)
            if row is None or row[2]:
                raise errors.ReadOnlySqlTransaction("server is in recovery (a replica)")
            with self._lock:
                self._sessions.append(Session(time.monotonic(), str(row[0]), str(row[1])))
            return conn
        except Exception as e:  # a crashed writer thread would silently stop the figures
            self._record_error(None, "connect", e, "no-write")
            if conn is not None:
                conn.close()
            return None
        finally:
            self._note_block(t0)

    def _guarded(
        self, conn: psycopg.Connection[tuple[Any, ...]], query: sql.SQL | sql.Composed, *args: Any
    ) -> tuple[Any, ...] | None:
        assert self._watchdog is not None
        return _guarded(self._watchdog, self.io_timeout, conn, query, args or None)

    def _write(self, conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
        """Insert the next id; True if acknowledged."""
        ident = self._next_id
        self._next_id += 1
        self._warning = None
        t0 = time.monotonic()
        try:
            self._guarded(conn, self._insert, ident)
        except Exception as e:
            self._record_error(ident, "write", e, self._outcome(conn, e))
            return False
        finally:
            self._note_block(t0)
        if self._warning is not None:
            self._record_error(ident, "write", UserWarning(self._warning), "uncertain")
            return False
        self._record_ack(ident)
        return True

    @staticmethod
    def _outcome(conn: psycopg.Connection[tuple[Any, ...]], exc: Exception) -> Outcome:
        """Rejected only for a plain ERROR on a connection that is still fine; else uncertain."""
        if not isinstance(exc, psycopg.Error) or conn.broken or exc.sqlstate is None:
            return "uncertain"
        if exc.diag.severity_nonlocalized in ("FATAL", "PANIC"):
            return "uncertain"
        return "rejected"

    def _on_notice(self, diag: errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING" and self._warning is None:
            self._warning = f"WARNING: {diag.message_primary}"

    # -- bookkeeping --------------------------------------------------------------------------

    def _note_block(self, t0: float) -> None:
        self._longest_block = max(self._longest_block, time.monotonic() - t0)

    def _record_ack(self, ident: int) -> None:
        with self._lock:
            self._ack_times.append(time.monotonic())
            self._ack_walls.append(time.time())
            if self._run_hi and self._run_hi[-1] == ident - 1:
                self._run_hi[-1] = ident
            else:
                self._run_lo.append(ident)
                self._run_hi.append(ident)
            self._lock.notify_all()

    def _record_error(
        self,
        ident: int | None,
        phase: Literal["connect", "write"],
        exc: BaseException,
        outcome: Outcome,
    ) -> None:
        error = WriteError(
            time.monotonic(),
            time.time(),
            ident,
            phase,
            type(exc).__name__,
            _first_line(exc),
            outcome,
        )
        with self._lock:
            if outcome == "uncertain" and ident is not None:
                self._uncertain.append(ident)
            elif outcome == "rejected":
                self._rejected += 1
            if len(self._errors) < MAX_ERRORS_KEPT:
                self._errors.append(error)
            else:
                self._errors_dropped += 1


# -- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberCheck:
    """What one member lacks of the acked ids, and which uncertain ids it holds."""

    host: str
    must_be_complete: bool
    missing: tuple[int, ...]
    uncertain_present: tuple[int, ...]
    error: str | None
    waited_s: float

    def __repr__(self) -> str:
        return (
            f"MemberCheck(host={self.host!r}, must_be_complete={self.must_be_complete},"
            f" missing={_ids_repr(self.missing)}, uncertain_present={_ids_repr(self.uncertain_present)},"
            f" error={self.error!r}, waited_s={self.waited_s:.2f})"
        )


@dataclass(frozen=True)
class VerifyResult:
    """Acked ids missing per member; `acked_lost` counts ids missing on any complete member."""

    acked: int
    members: tuple[MemberCheck, ...]
    acked_lost: int
    lost_ids: tuple[int, ...] = field(repr=False)

    @property
    def ok(self) -> bool:
        """Nothing lost, and every member that must be complete could be checked."""
        return self.acked_lost == 0 and not any(
            m.error for m in self.members if m.must_be_complete
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return asdict(self) | {"ok": self.ok}


_VERIFY_TIMEOUT = 30.0  # ~100k ids take well under a second; a frozen member must not hang us
_MISSING = sql.SQL(
    "SELECT coalesce(array_agg(g.id ORDER BY g.id), '{{}}')"
    " FROM unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi),"
    " LATERAL generate_series(r.lo, r.hi) AS g(id)"
    " WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = g.id)"
)
_PRESENT = sql.SQL(
    "SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM {table} WHERE id = ANY(%s::bigint[])"
)


def _check_member(
    conninfo: str, report: WriterReport, watchdog: _Watchdog
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(acked ids missing, uncertain ids present) on one member, computed server-side."""
    table = sql.Identifier(report.table)
    lows = [lo for lo, _ in report.acked_ranges]
    highs = [hi for _, hi in report.acked_ranges]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:
            missing = _guarded(
                watchdog, _VERIFY_TIMEOUT, conn, _MISSING.format(table=table), (lows, highs)
            )
            present = _guarded(
                watchdog,
                _VERIFY_TIMEOUT,
                conn,
                _PRESENT.format(table=table),
                (list(report.uncertain),),
            )
        except errors.UndefinedTable:
            return tuple(report.acked_ids()), ()
    return tuple(missing[0] if missing else ()), tuple(present[0] if present else ())


def _member_conninfo(base: str, host: str) -> str:
    """Point `base` at one member ("host" or "host:port"), accepting replicas."""
    params = pgconninfo.conninfo_to_dict(base)
    params.pop("hostaddr", None)
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        params |= {"host": name, "port": port}
    else:
        params["host"] = host
        params["port"] = str(params.get("port", "5432")).split(",")[0]  # from a multi-host DSN
    timeout = f"-c statement_timeout={round(_VERIFY_TIMEOUT * 1000) - 1000}ms"
    params |= {"target_session_attrs": "any", "options": timeout}
    params.setdefault("connect_timeout", 5)
    return pgconninfo.make_conninfo("", **params)


def verify_acked(
    source: WriterReport | ContinuousWriter,
    hosts: Sequence[str],
    *,
    complete: Collection[str] | None = None,
    wait_for_catchup: float = 0.0,
    conninfo: str | None = None,
    **params: Any,
) -> VerifyResult:
    """Check on each member directly which acked ids it lacks.

    `hosts` are member addresses ("10.0.0.2" or "10.0.0.2:5432"), not a Service. `complete`
    names the members that must hold every acked id (healthy streaming members; default: all);
    each of those is re-checked for up to `wait_for_catchup` seconds while it lacks something or
    cannot be reached, since a replica may lag a little after a failover. Connection parameters
    default to the writer's when `source` is a writer; `conninfo`/`params` override them.
    """
    if isinstance(source, ContinuousWriter):
        report, base = source.report(), source.base_conninfo
    else:
        report, base = source, ""
    base = pgconninfo.make_conninfo(conninfo if conninfo is not None else base, **params)
    must = set(hosts if complete is None else complete)
    deadline = time.monotonic() + wait_for_catchup
    watchdog = _Watchdog()
    try:
        checks = [
            _wait_member(base, host, report, host in must, deadline=deadline, watchdog=watchdog)
            for host in hosts
        ]
    finally:
        watchdog.close()
    lost = sorted({i for c in checks if c.must_be_complete for i in c.missing})
    return VerifyResult(report.acked, tuple(checks), len(lost), tuple(lost))


def _wait_member(
    base: str,
    host: str,
    report: WriterReport,
    must: bool,
    *,
    deadline: float,
    watchdog: _Watchdog,
) -> MemberCheck:
    t0 = time.monotonic()
    while True:
        missing: tuple[int, ...] = ()
        present: tuple[int, ...] = ()
        error: str | None = None
        try:
            missing, present = _check_member(_member_conninfo(base, host), report, watchdog)
        except psycopg.Error as e:
            error = f"{type(e).__name__}: {_first_line(e)}"
        done = not missing and error is None
        if done or not must or time.monotonic() >= deadline:
            return MemberCheck(host, must, missing, present, error, time.monotonic() - t0)
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
