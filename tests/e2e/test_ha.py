"""High availability under faults: deploy, failovers under writes, partition, switchover, rotation, restarts.

The tests share one 3-unit deployment and run in order; each leaves the cluster healthy.
"""

from __future__ import annotations

import time

import pytest

from substrate.backends import backend
from substrate.backends.local import LocalBackend
from substrate.fixtures import verify, writer
from tests.e2e.helpers import APP, cluster, connect, password, primary, roles_settled, wait
from workload import layout

pytestmark = pytest.mark.e2e

UNITS = 3


def healthy(b: LocalBackend, units: int = UNITS, timeout: float = 240) -> None:
    b.wait_for(roles_settled(APP, units), timeout=timeout, what=f"{units} healthy units")
    wait(lambda: cluster(b).healthy and len(cluster(b).members) == units, 120, "Patroni healthy")


def start_writer(b: LocalBackend, table: str) -> writer.ContinuousWriter:
    w = writer.ContinuousWriter(
        host=b.service_address(f"{APP}-primary"),
        user="operator",
        password=password(b),
        dbname="postgres",
        table=table,
    )
    w.start()
    assert w.wait_for_acks(20, timeout=30), "the writer never got going"
    return w


def finish_writer(b: LocalBackend, w: writer.ContinuousWriter) -> writer.WriterReport:
    assert w.wait_for_acks(w.acked_count + 20, timeout=60), "writes did not resume"
    report = w.stop()
    members = [u.address for u in b.status().app_units(APP)]
    result = verify.verify_acked(
        report,
        members,
        wait_for_catchup=60,
        user="operator",
        password=password(b),
        dbname="postgres",
    )
    assert result.acked_lost == 0, result
    assert result.ok, result
    assert report.acked > 0
    return report


def test_deploy_three_units(juju: LocalBackend):
    juju.deploy(APP, units=UNITS)
    healthy(juju)
    status = cluster(juju)
    leader = status.leader
    assert leader is not None
    assert [m.state for m in status.members if not m.is_leader] == ["streaming", "streaming"]
    # synchronous-node-count "all": every replica is synchronous.
    assert len(status.sync_standbys) == UNITS - 1
    assert primary(juju) == f"{APP}/{leader.name.rsplit('-', 1)[1]}"

    pw = password(juju)
    with connect(juju.service_address(f"{APP}-primary"), pw) as conn:
        conn.execute("CREATE TABLE deploy_check (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO deploy_check VALUES (1, 'on every member')")
    for unit in juju.status().app_units(APP):

        def replicated(address: str = unit.address) -> bool:
            with connect(address, pw) as conn:
                row = conn.execute("SELECT note FROM deploy_check WHERE id = 1").fetchone()
            return row is not None and row[0] == "on every member"

        wait(replicated, 30, f"the row on {unit.name}")
    with connect(juju.service_address(f"{APP}-replicas"), pw) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_sigkill_primary_under_writes(juju: LocalBackend):
    old = primary(juju)
    w = start_writer(juju, "sigkill_writes")
    start = time.monotonic()
    juju.kill(old, "patroni", backend.Signal.SIGKILL)
    juju.kill(old, "postgres", backend.Signal.SIGKILL)
    fault = time.monotonic()
    assert w.wait_for_ack_after(fault, timeout=90), "no write acknowledged after the kill"
    report = finish_writer(juju, w)
    print(f"SIGKILL of {old}: write outage {report.outage_during(start, fault)} s")
    healthy(juju)


def test_pod_loss_under_writes(juju: LocalBackend):
    old = primary(juju)
    w = start_writer(juju, "pod_loss_writes")
    start = time.monotonic()
    juju.delete_pod(old, recreate=False, force=True)
    fault = time.monotonic()
    assert w.wait_for_ack_after(fault, timeout=120), "no write acknowledged after the pod loss"
    new = primary(juju)
    assert new != old
    juju.recreate_pod(old)
    healthy(juju)
    report = finish_writer(juju, w)
    print(
        f"pod loss of {old}: write outage {report.outage_during(start, fault)} s, new primary {new}"
    )
    member = cluster(juju).member(layout.member_name(old))
    assert member is not None and not member.is_leader and member.state == "streaming"


def test_partition_of_primary(juju: LocalBackend):
    old = primary(juju)
    old_member = layout.member_name(old)
    w = start_writer(juju, "partition_writes")
    start = time.monotonic()
    juju.disconnect(old)
    fault = time.monotonic()
    try:
        assert w.wait_for_ack_after(fault, timeout=120), "the majority did not take over"

        def new_primary() -> bool:
            leader = cluster(juju).leader
            return leader is not None and leader.name != old_member

        wait(new_primary, 60, "a new leader on the majority side")

        def old_not_writable() -> bool:
            # Asked inside the cut-off pod: its Patroni's own view of its PostgreSQL.
            probe = (
                "import json, urllib.request as u;"
                f"print(json.load(u.urlopen('http://127.0.0.1:{layout.PORT_PATRONI}/patroni'))['role'])"
            )
            return juju.exec(old, ["python3", "-c", probe]).strip() != "primary"

        # No two writable primaries: the cut-off one demotes itself once it cannot renew its lock
        # (failsafe mode keeps a primary only while it can reach every other member).
        with_demote = _eventually(old_not_writable, 60)
    finally:
        juju.reconnect(old)
    healthy(juju)
    report = finish_writer(juju, w)
    print(f"partition of {old}: write outage {report.outage_during(start, fault)} s")
    member = cluster(juju).member(old_member)
    assert member is not None and not member.is_leader
    assert with_demote


def _eventually(probe: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():  # type: ignore[operator]
                return True
        except Exception:
            pass
        time.sleep(1)
    return False


def test_promote_to_primary_on_sync_standby(juju: LocalBackend):
    standby = next(u.name for u in juju.status().app_units(APP) if u.message == "sync standby")
    w = start_writer(juju, "switchover_writes")
    start = time.monotonic()
    juju.run_action(standby, "promote-to-primary", {"scope": "unit"})
    done = time.monotonic()
    assert primary(juju) == standby
    report = finish_writer(juju, w)
    print(f"switchover to {standby}: write outage {report.outage_during(start, done)} s")
    healthy(juju)


def test_promote_refused_on_primary(juju: LocalBackend):
    with pytest.raises(backend.ActionFailedError, match="already the primary"):
        juju.run_action(primary(juju), "promote-to-primary", {"scope": "unit"})


def test_set_password_of_operator(juju: LocalBackend):
    old = password(juju)
    leader = next(u.name for u in juju.status().app_units(APP) if u.leader)
    new = juju.run_action(leader, "set-password", {"username": "operator"})["password"]
    assert new != old
    healthy(juju)
    host = juju.service_address(f"{APP}-primary")
    with connect(host, new) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(Exception, match="password authentication failed"):
        connect(host, old)


def test_restart_parameter_rolls_primary_last(juju: LocalBackend):
    w = start_writer(juju, "restart_writes")
    pw = password(juju)
    juju.config(APP, {"connection-max-connections": 150})

    def applied_everywhere() -> bool:
        for unit in juju.status().app_units(APP):
            with connect(unit.address, pw) as conn:
                if conn.execute("SHOW max_connections").fetchone() != ("150",):
                    return False
        return True

    juju.wait_for(
        lambda _: applied_everywhere(), timeout=300, what="max_connections=150 everywhere"
    )
    starts = {}
    for unit in juju.status().app_units(APP):
        with connect(unit.address, pw) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time(), pg_is_in_recovery()").fetchone()
            assert row is not None
            starts[unit.name] = row
    primary_start = next(t for t, recovery in starts.values() if not recovery)
    assert all(t <= primary_start for t, recovery in starts.values() if recovery), starts
    finish_writer(juju, w)
    healthy(juju)
