"""Members come and go: scale 3 -> 5 -> 2 under writes (a departing primary hands over), leader loss.

The tests share one deployment and run in order.
"""

from __future__ import annotations

import pytest

from substrate.backends.local import LocalBackend
from substrate.fixtures import verify, writer
from tests.e2e.helpers import APP, cluster, connect, leader, password, primary, roles_settled, wait
from workload import layout

pytestmark = pytest.mark.e2e


def settle(b: LocalBackend, units: int) -> None:
    b.wait_for(roles_settled(APP, units), timeout=300, what=f"{units} healthy units")


def test_scale_up_to_five(juju: LocalBackend):
    juju.deploy(APP, units=3)
    settle(juju, 3)
    pw = password(juju)
    with connect(juju.service_address(f"{APP}-primary"), pw) as conn:
        conn.execute("CREATE TABLE scale_check (id int PRIMARY KEY)")
        conn.execute("INSERT INTO scale_check SELECT generate_series(1, 1000)")
    juju.add_unit(APP, 2)
    settle(juju, 5)
    # synchronous-node-count "all": four synchronous standbys now.
    assert len(cluster(juju).sync_standbys) == 4
    for unit in juju.status().app_units(APP):

        def has_rows(address: str = unit.address) -> bool:
            with connect(address, pw) as conn:
                return conn.execute("SELECT count(*) FROM scale_check").fetchone() == (1000,)

        wait(has_rows, 60, f"the rows on {unit.name}")


def test_scale_down_to_two_with_the_primary_leaving(juju: LocalBackend):
    # Kubernetes removes the highest ordinals: make the last unit the primary first, so that the
    # scale-down takes the primary away and the charm must hand over before its pod goes.
    last = f"{APP}/4"
    juju.run_action(last, "promote-to-primary", {"scope": "unit"})
    assert primary(juju) == last
    pw = password(juju)
    w = writer.ContinuousWriter(
        host=juju.service_address(f"{APP}-primary"),
        user="operator",
        password=pw,
        dbname="postgres",
        table="scale_writes",
    )
    w.start()
    assert w.wait_for_acks(50, timeout=30)
    juju.remove_unit(f"{APP}/4", f"{APP}/3", f"{APP}/2")
    settle(juju, 2)
    assert primary(juju) in (f"{APP}/0", f"{APP}/1")
    assert w.wait_for_acks(w.acked_count + 50, timeout=60), "the application is not writable"
    report = w.stop()
    survivors = [u.address for u in juju.status().app_units(APP)]
    result = verify.verify_acked(
        report, survivors, wait_for_catchup=60, user="operator", password=pw, dbname="postgres"
    )
    assert result.acked_lost == 0, result
    assert [m.name for m in cluster(juju).members] == [f"{APP}-0", f"{APP}-1"]
    # The departed members are gone from Patroni's synchronous set too.
    assert len(cluster(juju).sync_standbys) == 1
    print(f"scale-down with the primary leaving: max write outage {report.max_outage_s:.2f} s")


def test_leader_unit_lost(juju: LocalBackend):
    # On Kubernetes only the highest ordinals can be scaled away; the leader goes for good when
    # its pod is lost with its node. Juju then elects another leader, which takes over the
    # application's duties.
    juju.add_unit(APP, 1)
    settle(juju, 3)
    old = leader(juju)
    juju.delete_pod(old, recreate=False, force=True)
    new = leader(juju)
    assert new != old
    juju.wait_for(
        lambda s: sum(u.message == "primary" for u in s.app_units(APP) if u.name != old) == 1,
        timeout=180,
        what="a primary among the units left",
    )
    # A password rotated by the new leader reaches PostgreSQL, and a cluster-wide parameter it
    # sets reaches every running member.
    pw = juju.run_action(new, "set-password", {"username": "operator"})["password"]
    juju.config(APP, {"memory-work-mem": 8192})
    alive = [u for u in juju.status().app_units(APP) if u.name != old]

    def work_mem_everywhere() -> bool:
        for unit in alive:
            with connect(unit.address, pw) as conn:
                if conn.execute("SHOW work_mem").fetchone() != ("8MB",):
                    return False
        return True

    wait(work_mem_everywhere, 90, "work_mem on every running member")
    # The lost unit comes back (its node returns) and rejoins with the new settings.
    juju.recreate_pod(old)
    settle(juju, 3)
    member = cluster(juju).member(layout.member_name(old))
    assert member is not None and member.state == "streaming"
