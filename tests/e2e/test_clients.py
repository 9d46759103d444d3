"""Client applications on a 3-unit cluster: credentials that work, isolation, failover, extensions.

The tests share one deployment and run in order. Every check goes through the test application
(tests/charms/app_requirer), which connects from its own pod with what the relation published.
"""

from __future__ import annotations

import psycopg
import pytest

from substrate.backends.backend import ActionFailedError
from substrate.backends.local import LocalBackend
from tests.e2e.helpers import APP, connect, leader, password, primary, roles_settled, wait

pytestmark = pytest.mark.e2e

UNITS = 3
APP_A, APP_B = "app-a", "app-b"


def query(b: LocalBackend, app: str, sql: str, endpoint: str = "primary", **params: str) -> str:
    args = {"sql": sql, "endpoint": endpoint, **params}
    try:
        return str(b.run_action(f"{app}/0", "query", args)["output"])
    except ActionFailedError as e:
        if "timeout expired" not in str(e):
            raise
    # A connection that never got an answer (not a refusal): try once more.
    return str(b.run_action(f"{app}/0", "query", args)["output"])


def served(b: LocalBackend, app: str, timeout: float = 180) -> dict[str, str]:
    """Wait until the application is active (it has credentials) and return them."""
    b.wait_for(
        lambda s: s.app_units(app)[0].workload_status == "active",
        timeout=timeout,
        what=f"{app} served",
    )
    return {k: str(v) for k, v in b.run_action(f"{app}/0", "credentials").items()}


def app_message(b: LocalBackend) -> str:
    return b.status().apps[APP][1]


def test_requirer_writes_on_primary_and_reads_on_replicas(juju: LocalBackend):
    juju.deploy(APP, units=UNITS)
    juju.deploy(APP_A, charm="app-requirer", config={"database-name": "orders"})
    juju.integrate(APP, f"{APP_A}:database")
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="3 healthy units")
    creds = served(juju, APP_A)

    assert creds["endpoints"] == f"{APP}-primary.{juju.model.name}.svc.cluster.local:5432"
    assert creds["read-only-endpoints"].startswith(f"{APP}-replicas.")
    assert creds["resource"] == "orders"
    assert creds["username"].startswith("relation_")
    assert creds["version"].split(".")[0].isdigit()
    assert creds["uris"].startswith(f"postgresql://{creds['username']}:")

    query(juju, APP_A, "CREATE TABLE items (id int PRIMARY KEY, name text)")
    query(juju, APP_A, "INSERT INTO items VALUES (1, 'one'), (2, 'two')")
    assert query(juju, APP_A, "SELECT current_user") == creds["username"]
    # Synchronous replication: what the primary acknowledged is on every standby.
    assert query(juju, APP_A, "SELECT count(*) FROM items", "replicas") == "2"
    assert query(juju, APP_A, "SELECT pg_is_in_recovery()", "replicas") == "t"
    with pytest.raises(ActionFailedError, match="read-only transaction"):
        query(juju, APP_A, "INSERT INTO items VALUES (3, 'three')", "replicas")


def test_two_requirers_see_only_their_own_database(juju: LocalBackend):
    juju.deploy(APP_B, charm="app-requirer", config={"database-name": "billing"})
    juju.integrate(APP, f"{APP_B}:database")
    served(juju, APP_B)
    query(juju, APP_B, "CREATE TABLE invoices (id int)")

    with pytest.raises(ActionFailedError, match=r"no pg_hba\.conf entry|permission denied"):
        query(juju, APP_B, "SELECT count(*) FROM items", database="orders")
    with pytest.raises(ActionFailedError, match=r"no pg_hba\.conf entry|permission denied"):
        query(juju, APP_A, "SELECT count(*) FROM invoices", database="billing")
    # Each one's data is where it left it.
    assert query(juju, APP_A, "SELECT count(*) FROM items") == "2"
    assert query(juju, APP_B, "SELECT count(*) FROM invoices") == "0"


def test_credentials_survive_a_switchover_and_system_password_rotation(juju: LocalBackend):
    before = primary(juju)
    standby = next(u.name for u in juju.status().app_units(APP) if u.message == "sync standby")
    juju.run_action(standby, "promote-to-primary")
    wait(lambda: primary(juju) == standby, 60, "the switchover")
    assert primary(juju) != before
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="roles settled")
    juju.run_action(leader(juju), "set-password", {"username": "operator"})
    juju.run_action(leader(juju), "set-password", {"username": "replication"})
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="roles settled")

    assert query(juju, APP_A, "INSERT INTO items VALUES (3, 'three') RETURNING id") == "3"
    assert query(juju, APP_A, "SELECT count(*) FROM items") == "3"
    wait(lambda: query(juju, APP_A, "SELECT count(*) FROM items", "replicas") == "3", 60, "read")


def test_extensions_follow_config_and_refuse_to_drop_what_is_used(juju: LocalBackend):
    juju.config(APP, {"plugin-citext-enable": True})
    wait(lambda: "citext" in query(juju, APP_A, "SELECT extname FROM pg_extension"), 120, "citext")
    query(juju, APP_A, "CREATE TABLE tags (name citext)")

    juju.config(APP, {"plugin-citext-enable": False})
    juju.wait_for(lambda s: "plugin-citext-enable" in s.apps[APP][1], timeout=120, what="blocked")
    assert juju.status().apps[APP][0] == "blocked"
    assert "citext" in query(juju, APP_A, "SELECT extname FROM pg_extension")  # nothing dropped

    query(juju, APP_A, "DROP TABLE tags")
    juju.wait_for(lambda s: s.apps[APP][0] == "active", timeout=120, what="unblocked")
    wait(
        lambda: "citext" not in query(juju, APP_A, "SELECT extname FROM pg_extension"),
        60,
        "citext dropped",
    )


def test_a_requirer_asking_for_a_disabled_extension_waits_for_the_operator(juju: LocalBackend):
    juju.deploy(
        "app-c", charm="app-requirer", config={"database-name": "geo", "extensions": "hstore"}
    )
    juju.integrate(APP, "app-c:database")
    juju.wait_for(
        lambda s: "plugin-hstore-enable" in s.apps[APP][1], timeout=120, what="the refusal"
    )
    assert juju.status().apps[APP][0] == "blocked"
    assert juju.status().app_units("app-c")[0].workload_status == "waiting"

    juju.config(APP, {"plugin-hstore-enable": True})
    served(juju, "app-c")
    assert "hstore" in query(juju, "app-c", "SELECT extname FROM pg_extension")
    assert juju.status().apps[APP][0] == "active"


@pytest.mark.parametrize("protocol", ["v0", "v0-plain"])
def test_older_requirers_are_served_too(juju: LocalBackend, protocol: str):
    app = f"legacy-{protocol}"
    juju.deploy(app, charm="app-requirer", config={"database-name": app, "protocol": protocol})
    juju.integrate(APP, f"{app}:database")
    creds = served(juju, app)
    assert creds["database"] == app and creds["username"].startswith("relation_")
    query(juju, app, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    assert query(juju, app, "SELECT count(*) FROM t", "replicas") == "1"


def test_relation_removed_revokes_access_and_keeps_the_data(juju: LocalBackend):
    creds = served(juju, APP_A)
    host = juju.service_address(f"{APP}-primary")
    with connect(host, creds["password"], dbname="orders", user=creds["username"]) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (3,)
    # Sessions the application still holds, on the primary and on a replica.
    held = [
        connect(
            juju.service_address(f"{APP}-{service}"),
            creds["password"],
            "orders",
            creds["username"],
        )
        for service in ("primary", "replicas")
    ]

    juju.remove_relation(APP, f"{APP_A}:database")
    juju.wait_for(
        lambda s: s.app_units(APP_A)[0].workload_status == "blocked", timeout=120, what="gone"
    )

    def closed(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        try:
            conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return True
        return False

    wait(lambda: all(closed(c) for c in held), 60, "the held sessions to be closed")
    for conn in held:
        conn.close()

    def refused() -> bool:
        try:
            with connect(host, creds["password"], dbname="orders", user=creds["username"]):
                return False
        except psycopg.OperationalError as e:
            return "password authentication failed" in str(e) or "pg_hba" in str(e)

    wait(refused, 60, "the old credentials to be refused")
    with connect(host, password(juju), dbname="orders") as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (3,)
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'")
        assert owner.fetchone() == ("orders_owner",)
    # app-b is untouched.
    assert query(juju, APP_B, "SELECT count(*) FROM invoices") == "0"
