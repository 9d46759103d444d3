"""Tenants apart: what one client application may never reach, and what only an operator grants.

One postgresql-k8s unit and test applications (tests/charms/app_requirer) sharing one model; the
tests run in order. Every outcome is read where a user would see it: the application status,
the catalogs, a session that works or is refused.
"""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from substrate.backends.backend import ActionFailedError
from substrate.backends.local import LocalBackend
from tests.e2e.helpers import APP, connect, password, roles_settled, wait

pytestmark = pytest.mark.e2e

SHOP, INTRUDER, ROLES, BOUNCER, MANY = "shop", "intruder", "roles", "bouncer", "many"


def query(b: LocalBackend, app: str, sql: str, **params: str) -> str:
    return str(
        b.run_action(f"{app}/0", "query", {"sql": sql, "endpoint": "primary", **params})["output"]
    )


def served(b: LocalBackend, app: str) -> dict[str, str]:
    b.wait_for(
        lambda s: s.app_units(app)[0].workload_status == "active",
        timeout=180,
        what=f"{app} served",
    )
    return {k: str(v) for k, v in b.run_action(f"{app}/0", "credentials").items()}


def refusal(b: LocalBackend, app: str) -> tuple[int, str]:
    """The relation id and the message of the refusal the application status shows for `app`."""
    pattern = re.compile(rf"database relation (\d+): {app}: (.*)")

    def found() -> re.Match[str] | None:
        return pattern.search(b.status().apps[APP][1])

    b.wait_for(lambda s: found() is not None, timeout=120, what=f"the refusal of {app}")
    match = found()
    assert match is not None and b.status().apps[APP][0] == "blocked"
    return int(match.group(1)), match.group(2)


def catalog(b: LocalBackend, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
    with connect(b.service_address(f"{APP}-primary"), password(b), dbname=dbname) as conn:
        return conn.execute(sql).fetchall()


def relation_users(b: LocalBackend, relation_id: int) -> list[str]:
    rows = catalog(b, "SELECT rolname FROM pg_roles ORDER BY 1")
    return [
        str(r[0])
        for r in rows
        if re.fullmatch(rf"relation_{relation_id}(_[0-9a-f]{{8}})?", str(r[0]))
    ]


def test_deploy_and_a_first_tenant(juju: LocalBackend):
    juju.deploy(APP, units=1)
    juju.deploy(SHOP, charm="app-requirer", config={"database-name": "orders"})
    juju.integrate(APP, f"{SHOP}:database")
    juju.wait_for(roles_settled(APP, 1), timeout=240, what="one healthy unit")
    served(juju, SHOP)
    query(juju, SHOP, "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)")


def test_another_application_asking_for_that_database_gets_nothing(juju: LocalBackend):
    before = catalog(juju, "SELECT rolname FROM pg_roles ORDER BY 1")
    juju.deploy(INTRUDER, charm="app-requirer", config={"database-name": "orders"})
    juju.integrate(APP, f"{INTRUDER}:database")
    relation_id, message = refusal(juju, INTRUDER)
    assert "database orders belongs to shop" in message
    assert "shared-databases=orders:shop+intruder" in message
    # Nothing was made for it: no user, no rule; it was told nothing it could log in with.
    assert relation_users(juju, relation_id) == []
    assert catalog(juju, "SELECT rolname FROM pg_roles ORDER BY 1") == before
    assert juju.status().app_units(INTRUDER)[0].workload_status != "active"
    with pytest.raises(ActionFailedError):
        query(juju, INTRUDER, "DROP TABLE items", database="orders")
    # The owner's data is as it left it.
    assert query(juju, SHOP, "SELECT count(*) FROM items") == "1"


def test_sharing_is_an_operator_decision(juju: LocalBackend):
    juju.config(APP, {"shared-databases": "orders:shop+intruder"})
    served(juju, INTRUDER)
    # The same database; each one's tables stay its own unless granted (or made as the owner
    # role, `SET ROLE orders_owner`).
    assert query(juju, INTRUDER, "SELECT current_database()") == "orders"
    query(juju, INTRUDER, "CREATE TABLE notes (id int)")
    # Taken back: the relation is refused again and its user is gone, sessions and all.
    juju.config(APP, {"shared-databases": ""})
    relation_id, message = refusal(juju, INTRUDER)
    assert "belongs to shop" in message
    wait(lambda: relation_users(juju, relation_id) == [], 60, "the intruder's user dropped")
    with pytest.raises(ActionFailedError):
        query(juju, INTRUDER, "DROP TABLE items", database="orders")
    assert query(juju, SHOP, "SELECT count(*) FROM items") == "1"
    juju.remove_relation(APP, f"{INTRUDER}:database")


def test_createrole_is_refused_by_default_and_on_postgresql_15_even_when_allowed(
    juju: LocalBackend,
):
    juju.deploy(
        ROLES,
        charm="app-requirer",
        config={"database-name": "r", "extra-user-roles": "createrole"},
    )
    juju.integrate(APP, f"{ROLES}:database")
    relation_id, message = refusal(juju, ROLES)
    major = int(catalog(juju, "SHOW server_version_num")[0][0]) // 10000  # type: ignore[arg-type]
    juju.config(APP, {"client-privileges": f"{ROLES}/{relation_id}:createrole"})
    if major >= 16:
        creds = served(juju, ROLES)
        # Proved on PostgreSQL 16+: CREATEROLE reaches only roles it has ADMIN on.
        with pytest.raises(ActionFailedError, match=r"permission denied|must have admin option"):
            query(juju, ROLES, f"GRANT pg_execute_server_program TO {creds['username']}")
        with pytest.raises(ActionFailedError, match="permission denied"):
            query(juju, ROLES, "ALTER ROLE monitoring PASSWORD 'taken-over-1234'")
        return
    # On PostgreSQL 15 (what this machine runs) CREATEROLE could do both: never offered.
    _, message = refusal(juju, ROLES)
    assert "createrole is not offered on PostgreSQL 15" in message
    assert relation_users(juju, relation_id) == []
    assert catalog(juju, "SELECT count(*) FROM pg_roles WHERE rolcreaterole AND NOT rolsuper") == [
        (0,)
    ]
    juju.remove_relation(APP, f"{ROLES}:database")


def test_superuser_only_by_decision_and_taken_back_with_its_sessions(juju: LocalBackend):
    juju.deploy(
        BOUNCER,
        charm="app-requirer",
        config={"database-name": "pool", "extra-user-roles": "superuser"},
    )
    juju.integrate(APP, f"{BOUNCER}:database")
    relation_id, message = refusal(juju, BOUNCER)
    entry = f"{BOUNCER}/{relation_id}:superuser"
    assert f"client-privileges={entry}" in message
    assert relation_users(juju, relation_id) == []

    juju.config(APP, {"client-privileges": entry})
    creds = served(juju, BOUNCER)
    user = creds["username"]
    assert catalog(juju, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{user}'") == [(True,)]
    host = juju.service_address(f"{APP}-primary")
    held = connect(host, creds["password"], dbname="pool", user=user)
    assert held.execute("SELECT current_setting('is_superuser')").fetchone() == ("on",)

    juju.config(APP, {"client-privileges": ""})
    refusal(juju, BOUNCER)
    # Refused from now on: the role loses SUPERUSER and then goes altogether.
    wait(
        lambda: (
            catalog(juju, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{user}'")
            in ([], [(False,)])
        ),
        60,
        "no superuser any more",
    )
    assert catalog(
        juju, "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname LIKE 'relation%'"
    ) == [(0,)]

    def ended() -> bool:
        try:
            held.execute("SELECT 1")
        except psycopg.OperationalError:
            return True
        return False

    wait(ended, 60, "the superuser session to end")
    held.close()
    juju.remove_relation(APP, f"{BOUNCER}:database")


def test_requests_beyond_the_bound_are_refused_and_the_rest_served(juju: LocalBackend):
    requests = [
        {"resource": f"many{i}", "salt": f"{i:016x}", "request-id": f"{i:016x}"}
        for i in range(100)
    ]
    databag = {"version": "v1", "requests": json.dumps(requests)}
    juju.deploy(
        MANY, charm="app-requirer", config={"protocol": "raw", "raw-databag": json.dumps(databag)}
    )
    juju.integrate(APP, f"{MANY}:database")
    relation_id, message = refusal(juju, MANY)
    assert message == "100 requests on one relation, at most 16 are served"
    wait(lambda: len(relation_users(juju, relation_id)) == 16, 300, "16 users")
    made = catalog(juju, "SELECT count(*) FROM pg_database WHERE datname LIKE 'many%'")
    assert made == [(16,)]
    # The cluster keeps answering its other tenants.
    assert query(juju, SHOP, "SELECT count(*) FROM items") == "1"
