"""Tier 2: the continuous writer against a real PostgreSQL that is stopped, frozen and made read-only.

The figures the chaos runs print are only worth something if the writer's own account is true:
every acked id is in the table, an outage is measured as long as the server was really away,
and a frozen server cannot freeze the writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from substrate.fixtures.verify import verify_acked
from substrate.fixtures.writer import ContinuousWriter, WriterReport
from tests.integration import pg_server as pg
from tests.integration.pg_server import PgServer

pytestmark = pytest.mark.integration

# The throwaway server runs with synchronous_commit=off for speed: a commit would then be
# acknowledged before its WAL is written, and an immediate stop could lose it. The writer's
# sessions ask for the guarantee the chaos runs rely on.
DURABLE = {"synchronous_commit": "on"}
BACKOFF_MAX = 0.2


@pytest.fixture(scope="module")
def shared() -> Iterator[PgServer]:
    """A server for the tests that leave it running."""
    with pg.pg_server() as server:
        yield server


@pytest.fixture
def own() -> Iterator[PgServer]:
    """A server of its own for a test that stops or freezes it."""
    with pg.pg_server() as server:
        yield server


def writer_for(server: PgServer, table: str, **kwargs: Any) -> ContinuousWriter:
    return ContinuousWriter(
        host=server.host,
        port=server.port,
        user=server.superuser,
        password=server.password,
        dbname="postgres",
        table=table,
        session_settings=DURABLE,
        **kwargs,
    )


def member(server: PgServer) -> str:
    return f"{server.host}:{server.port}"


def table_ids(server: PgServer, table: str) -> list[int]:
    query = sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(table))
    with server.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def pg_ctl(server: PgServer, *args: str) -> None:
    subprocess.run(
        [
            *("setpriv", f"--reuid={pg.OS_USER}", f"--regid={pg.OS_USER}", "--init-groups"),
            *("--reset-env", "env", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"),
            *(str(pg.PG_BIN / "pg_ctl"), "-D", str(server.data_dir), *args),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


def server_pids(server: PgServer) -> list[int]:
    """The postmaster and its children (backends, walwriter, ...)."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def run_until(writer: ContinuousWriter, acks: int) -> None:
    assert writer.wait_for_acks(acks, timeout=10), f"fewer than {acks} acks: {writer.report()}"


def test_acked_rows_are_the_rows_in_the_table(shared: PgServer) -> None:
    with writer_for(shared, "steady") as writer:
        time.sleep(1.0)
    report = writer.stop()

    assert report.errors == () and report.uncertain == ()
    assert 50 <= report.acked <= 110  # one row per 10 ms, never a burst
    assert table_ids(shared, "steady") == list(report.acked_ids())
    assert report.outages == () and report.max_outage_s == 0.0
    assert report.first_ack is not None and report.last_ack is not None
    quiet = report.outage_around(report.first_ack + 0.5)  # no fault: about one interval
    assert quiet is not None and quiet < report.outage_threshold_s
    assert report.outage_around(report.last_ack + 1) is None
    assert [(s.server, s.synchronous_commit) for s in report.sessions] == [(member(shared), "on")]
    json.dumps(report.to_dict())

    result = verify_acked(
        report, [member(shared)], user=shared.superuser, password=shared.password
    )
    assert result.ok and result.acked_lost == 0 and result.acked == report.acked


def test_verify_reports_a_deleted_acked_id(shared: PgServer) -> None:
    with writer_for(shared, "tampered") as writer:
        run_until(writer, 30)
    report = writer.stop()
    victim = list(report.acked_ids())[10]
    with shared.connect() as conn:
        conn.execute("DELETE FROM tampered WHERE id = %s", (victim,))

    t0 = time.monotonic()
    result = verify_acked(writer, [member(shared)], wait_for_catchup=0.6)
    assert time.monotonic() - t0 >= 0.6  # it waited for a catch-up that never came
    assert not result.ok
    assert result.acked_lost == 1 and result.lost_ids == (victim,)
    assert result.members[0].missing == (victim,)
    assert str(victim) in repr(result.members[0])

    # A member the caller does not vouch for is reported but not counted as loss.
    lenient = verify_acked(writer, [member(shared)], complete=[])
    assert lenient.acked_lost == 0 and lenient.members[0].missing == (victim,)

    # A member that must be complete but cannot be reached fails the check; others do not.
    with shared.connect() as conn:
        conn.execute("INSERT INTO tampered (id) VALUES (%s)", (victim,))
    nowhere = f"{shared.host}:1"
    assert verify_acked(writer, [member(shared), nowhere], complete=[member(shared)]).ok
    unreachable = verify_acked(writer, [member(shared), nowhere])
    assert not unreachable.ok and unreachable.acked_lost == 0
    assert unreachable.members[1].error is not None


def test_a_read_only_server_rejects_writes_without_uncertainty(shared: PgServer) -> None:
    with writer_for(shared, "readonly") as writer, shared.connect() as admin:
        run_until(writer, 20)
        admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        admin.execute("SELECT pg_reload_conf()")
        t_fault = time.monotonic()
        time.sleep(1.0)
        admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        admin.execute("SELECT pg_reload_conf()")
        t_back = time.monotonic()
        assert writer.wait_for_ack_after(t_back, timeout=5)
    report = writer.stop()

    refusals = [e for e in report.errors if e.kind == "ReadOnlySqlTransaction"]
    assert refusals and all(e.outcome == "rejected" for e in refusals)
    assert report.rejected == len(refusals) and report.uncertain == ()
    # Backends apply a reload at their next command: probe the middle of the read-only window.
    outage = report.outage_around(t_fault + 0.5)
    assert outage is not None and 0.5 <= outage <= (t_back - t_fault) + BACKOFF_MAX + 0.5
    assert table_ids(shared, "readonly") == list(report.acked_ids())


def test_an_outage_is_measured_and_no_acked_row_is_lost(own: PgServer) -> None:
    down_for = 1.5
    with writer_for(own, "restart") as writer:
        run_until(writer, 50)
        t_fault = time.monotonic()
        pg_ctl(own, "stop", "-m", "immediate", "-w")
        t_down = time.monotonic()  # every backend is gone: no ack can come after this
        time.sleep(down_for)
        during = writer.report()  # an outage still going on is reported, open-ended
        try:
            pg_ctl(own, "start", "-w", "-l", str(own.data_dir.parent / "restarted.log"))
            t_up = time.monotonic()
            assert writer.wait_for_ack_after(t_up, timeout=10)
            report = writer.stop()
            result = verify_acked(writer, [member(own)])
        finally:
            writer.stop()
            # The fixture only knows the first postmaster; this one is ours to stop.
            with contextlib.suppress(subprocess.CalledProcessError):
                pg_ctl(own, "stop", "-m", "fast", "-w")

    outage = report.outage_around(t_down)
    assert outage is not None
    assert down_for <= outage <= (t_up - t_fault) + BACKOFF_MAX + 0.5
    assert len(report.outages) == 1 and report.max_outage_s == pytest.approx(outage)
    # pg_ctl notices readiness by polling: the writer may get in before it returns.
    assert report.outages[0].start < t_down and (report.outages[0].end or 0) > t_down + down_for
    # The insert sent into the dying connection is uncertain, not acked and not forgotten.
    assert report.uncertain and not set(report.uncertain) & set(report.acked_ids())
    assert all(e.at > t_fault for e in report.errors)
    assert result.ok and result.acked_lost == 0, result
    assert len(report.sessions) == 2
    assert during.outages[-1].end is None and during.outages[-1].duration_s >= down_for
    assert during.outages[-1].start == report.outages[0].start


def test_a_frozen_server_does_not_freeze_the_writer(own: PgServer) -> None:
    frozen_for, io_timeout, connect_timeout = 3.0, 1.0, 2
    writer = writer_for(
        own,
        "frozen",
        statement_timeout=0.5,
        io_timeout=io_timeout,
        connect_timeout=connect_timeout,
    )
    with writer:
        run_until(writer, 30)
        pids = server_pids(own)
        t_fault = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        t_frozen = time.monotonic()
        try:
            time.sleep(frozen_for)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        t_thaw = time.monotonic()
        assert writer.wait_for_ack_after(t_thaw, timeout=10)
    report: WriterReport = writer.stop()

    # Gave up on the frozen statement after io_timeout, not after the freeze.
    first_error = min(e.at for e in report.errors)
    assert first_error - t_fault <= io_timeout + 0.5
    assert report.errors[0].outcome == "uncertain"
    assert report.longest_block_s <= connect_timeout + 0.5 < frozen_for
    # An answer already on its way may land just after the signals: probe mid-freeze.
    outage = report.outage_around(t_frozen + frozen_for / 2)
    assert outage is not None and frozen_for - 0.1 <= outage <= (t_thaw - t_fault) + 1.0
    result = verify_acked(writer, [member(own)])
    assert result.ok, result
    # The frozen backend ran the insert once thawed: "uncertain" really means unknown.
    deadline = time.monotonic() + 5
    while report.uncertain[0] not in table_ids(own, "frozen") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert report.uncertain[0] in table_ids(own, "frozen")
