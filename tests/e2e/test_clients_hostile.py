"""Hostile requirers: every refused request changes nothing in PostgreSQL and says why.

One postgresql-k8s unit and one test application that writes its databag verbatim
(protocol raw). For each input the relation is made, the refusal is read from the application
status, the catalogs are compared with the ones before, and the relation is removed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from substrate.backends.local import LocalBackend
from tests.e2e.helpers import APP, connect, password, roles_settled

pytestmark = pytest.mark.e2e

HOSTILE = "hostile"

# (databag, what the refusal must mention)
CASES: list[tuple[dict[str, str], str]] = [
    ({"database": 'a"b'}, "not allowed"),
    ({"database": "x'; DROP TABLE t; --"}, "not allowed"),
    ({"database": "db;select pg_sleep(1)"}, "not allowed"),
    ({"database": "db\x00evil"}, "not allowed"),
    ({"database": "a" * 64}, "longer than 63 bytes"),
    ({"database": "postgres"}, "reserved"),
    ({"database": "template0"}, "reserved"),
    ({"database": "TEMPLATE1"}, "reserved"),
    ({"database": "pg_catalog"}, "reserved"),
    ({"database": "db name"}, "not allowed"),
    ({"database": "db\nname"}, "not allowed"),
    ({"database": "$(reboot)"}, "not allowed"),
    ({"database": "../etc"}, "not allowed"),
    ({"database": "dbé"}, "not allowed"),
    ({"database": "ok1", "extra-user-roles": "superuser"}, "client-privileges"),
    ({"database": "ok2", "extra-user-roles": "pg_execute_server_program"}, "not allowed"),
    ({"database": "ok3", "extra-user-roles": "pg_read_server_files"}, "not allowed"),
    ({"database": "ok4", "extra-user-roles": "postgres"}, "not allowed"),
    ({"database": "ok5", "extra-user-roles": "createdb; DROP ROLE operator"}, "not allowed"),
    ({"database": "ok6", "extra-user-roles": "operator"}, "not allowed"),
    ({"database": "ok7", "extensions": "plpython3u"}, "plugin-plpython3u-enable"),
    ({"database": "ok7", "extensions": "evil_ext"}, "not available"),
    ({"database": "ok8", "extensions": "citext; DROP DATABASE postgres"}, "not available"),
    ({"database": "ok9", "extensions": "citext"}, "plugin-citext-enable"),
    ({"version": "v1", "requests": "not a list"}, "malformed"),
    ({"version": "v1", "requests": json.dumps([{"resource": "x'y", "salt": "s"}])}, "not allowed"),
]


def catalog(b: LocalBackend) -> dict[str, Any]:
    """Roles, memberships, databases and extensions: what a request could have changed."""
    host = b.service_address(f"{APP}-primary")
    with connect(host, password(b)) as conn:
        return {
            "roles": conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin"
                " FROM pg_roles ORDER BY 1"
            ).fetchall(),
            "members": conn.execute(
                "SELECT roleid::regrole::text, member::regrole::text FROM pg_auth_members"
                " ORDER BY 1, 2"
            ).fetchall(),
            "databases": conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall(),
            "extensions": conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall(),
        }


def test_deploy(juju: LocalBackend):
    juju.deploy(APP, units=1)
    juju.wait_for(roles_settled(APP, 1), timeout=240, what="one healthy unit")


@pytest.mark.parametrize(("databag", "reason"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_hostile_request_is_refused_and_changes_nothing(
    juju: LocalBackend, databag: dict[str, str], reason: str
):
    before = catalog(juju)
    if HOSTILE not in juju.status().apps:
        juju.deploy(HOSTILE, charm="app-requirer", config={"protocol": "raw"})
    juju.config(HOSTILE, {"raw-databag": json.dumps(databag)})
    juju.integrate(APP, f"{HOSTILE}:database")
    status = juju.wait_for(lambda s: s.apps[APP][0] == "blocked", timeout=60, what="the refusal")
    message = status.apps[APP][1]
    assert message.startswith("database relation ") and f"{HOSTILE}:" in message, message
    assert reason in message, message
    assert catalog(juju) == before
    creds = juju.run_action(f"{HOSTILE}/0", "credentials")
    assert "password" not in creds

    juju.remove_relation(APP, f"{HOSTILE}:database")
    juju.wait_for(lambda s: s.apps[APP][0] == "active", timeout=60, what="the refusal cleared")
    assert catalog(juju) == before
