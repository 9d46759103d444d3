"""Relations that arrive at awkward times are served once the cluster can, with no manual step."""

from __future__ import annotations

import pytest

from substrate.backends.local import LocalBackend
from tests.e2e.helpers import APP, primary, roles_settled, wait

pytestmark = pytest.mark.e2e

UNITS = 3


def served(b: LocalBackend, app: str, timeout: float = 300) -> None:
    b.wait_for(
        lambda s: s.app_units(app)[0].workload_status == "active",
        timeout=timeout,
        what=f"{app} served",
    )


def query(b: LocalBackend, app: str, sql: str, endpoint: str = "primary") -> str:
    return str(b.run_action(f"{app}/0", "query", {"sql": sql, "endpoint": endpoint})["output"])


def test_relation_made_before_the_cluster_exists_is_served_once_it_does(juju: LocalBackend):
    # Without `juju trust` the units wait and no PostgreSQL runs: the relation comes first.
    juju.deploy(APP, units=UNITS, trust=False)
    juju.deploy("early", charm="app-requirer", config={"database-name": "early"})
    juju.integrate(APP, "early:database")
    status = juju.wait_for(
        lambda s: all("juju trust" in u.message for u in s.app_units(APP)),
        timeout=60,
        what="units asking for trust",
    )
    assert status.app_units("early")[0].workload_status == "waiting"
    juju.trust(APP)
    served(juju, "early")
    query(juju, "early", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    assert query(juju, "early", "SELECT count(*) FROM t") == "1"
    # The relation never left a status blocked on the way.
    assert juju.status().apps[APP][0] == "active"


def test_relation_made_during_a_failover_is_served_after_it(juju: LocalBackend):
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="roles settled")
    old = primary(juju)
    juju.delete_pod(old, force=True)  # the node under the primary is gone
    juju.deploy("late", charm="app-requirer", config={"database-name": "late"})
    juju.integrate(APP, "late:database")
    served(juju, "late")
    assert query(juju, "late", "SELECT 1") == "1"
    # The earlier client still works, on the new primary.
    wait(lambda: query(juju, "early", "SELECT count(*) FROM t") == "1", 120, "early reads")
    assert query(juju, "early", "INSERT INTO t VALUES (2) RETURNING id") == "2"
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="the lost unit back")
    wait(
        lambda: query(juju, "early", "SELECT count(*) FROM t", "replicas") == "2", 120, "replicas"
    )
