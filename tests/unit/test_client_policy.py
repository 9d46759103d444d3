"""What a client request may get: database names, extra-user-roles, extensions, user names."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from dpcharmlibs import interfaces

from components import client_policy
from relations.database import ClientRequest

SUPERUSER_APPS = frozenset({"pgbouncer", "pgbouncer-k8s"})


def request(**changes: Any) -> ClientRequest:
    """A V1 request of `myapp` on relation 7 for `mydb`, with whatever the test changes."""
    values: dict[str, Any] = {
        "relation_id": 7,
        "app": "myapp",
        "version": "v1",
        "request_id": "4f1e2b3c9d8a7f6e",
        "salt": "0123456789abcdef",
        "database": "mydb",
        "extra_user_roles": None,
        "extensions": None,
        "wants_secrets": True,
    } | changes
    if "model" in {f.name for f in dataclasses.fields(ClientRequest)}:
        # The library's request the adapter keeps alongside (policy never reads it).
        values.setdefault("model", interfaces.RequirerCommonModel(resource=values["database"]))
    return ClientRequest(**values)


def plan(enabled: frozenset[str] = frozenset(), **changes: Any) -> client_policy.ClientPlan:
    return client_policy.plan(request(**changes), enabled, SUPERUSER_APPS)


def refusal(**changes: Any) -> str:
    """The message an operator would read for a refused request."""
    with pytest.raises(client_policy.RequestRefusedError) as refused:
        plan(**changes)
    message = str(refused.value)
    assert message
    # The message ends up in a one-line status: no raw control characters from the request.
    assert not any(ch in message for ch in "\n\r\x00\t\x1b")
    return message


# -- database names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["mydb", "my_db", "my-db", "_private", "App1", "x" * 63, "pgdb", "postgres2", "template"],
)
def test_accepted_database_names(name: str):
    planned = plan(database=name)
    assert planned.database == name
    assert planned.owner.endswith("_owner")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "no database name"),
        ('my"db', "not allowed"),
        ("my'db", "not allowed"),
        ("db;drop database postgres", "not allowed"),
        ("db\x00x", "not allowed"),
        ("db\nhost all all 0.0.0.0/0 trust", "not allowed"),
        ("db\r", "not allowed"),
        ("db\tx", "not allowed"),
        ("my db", "not allowed"),
        (" mydb", "not allowed"),
        ("x" * 64, "longer than 63 bytes"),
        ("é" * 40, "longer than 63 bytes"),
        ("données", "not allowed"),
        ("db\u200b", "not allowed"),  # zero-width space
        ("postgres", "reserved"),
        ("Postgres", "reserved"),
        ("template0", "reserved"),
        ("TEMPLATE1", "reserved"),
        ("pg_catalog", "reserved"),
        ("PG_x", "reserved"),
        ("1db", "not starting with a digit"),
        ("-db", "not starting with a digit or -"),
        ("db\\x", "not allowed"),
        ("$(reboot)", "not allowed"),
        ("`id`", "not allowed"),
        ("*", "not allowed"),
        ("../x", "not allowed"),
        ("db/x", "not allowed"),
        ("db.x", "not allowed"),
        ("db%", "not allowed"),
    ],
)
def test_refused_database_names(name: str, why: str):
    assert why in refusal(database=name)


def test_refused_name_is_shown_on_one_line():
    message = refusal(database="a\nb")
    assert "a\\" in message
    assert "nb" in message


def test_refused_name_is_shown_escaped_once():
    assert "'a\\nb'" in refusal(database="a\nb")


def test_long_refused_name_is_shown_truncated():
    assert len(refusal(database="-" + "x" * 5000)) < 300


# -- extra-user-roles ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "createdb", "createrole", "granted"),
    [
        (None, False, False, ()),
        ("", False, False, ()),
        ("createdb", True, False, ()),
        ("CREATEDB", True, False, ()),
        ("createdb,createrole", True, True, ()),
        (" CreateRole , createdb ", True, True, ()),
        ("pg_monitor", False, False, ("pg_monitor",)),
        ("PG_READ_ALL_DATA,pg_write_all_data", False, False,
         ("pg_read_all_data", "pg_write_all_data")),
        ("pg_read_all_settings,pg_read_all_stats,pg_stat_scan_tables", False, False,
         ("pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables")),
        ("pg_monitor,pg_monitor,createdb", True, False, ("pg_monitor",)),
    ],
)  # fmt: skip
def test_accepted_extra_user_roles(
    roles: str | None, createdb: bool, createrole: bool, granted: tuple[str, ...]
):
    planned = plan(extra_user_roles=roles)
    assert (planned.createdb, planned.createrole, planned.superuser) == (
        createdb,
        createrole,
        False,
    )
    assert planned.roles == granted


@pytest.mark.parametrize("app", ["pgbouncer", "pgbouncer-k8s"])
@pytest.mark.parametrize("roles", ["superuser", "SUPERUSER", "superuser,createdb"])
def test_superuser_for_allowed_apps(app: str, roles: str):
    assert plan(app=app, extra_user_roles=roles).superuser


@pytest.mark.parametrize("app", ["myapp", "pgbouncer-evil", "PGBOUNCER"])
def test_superuser_refused_for_other_apps(app: str):
    message = refusal(app=app, extra_user_roles="createdb,superuser")
    assert "SUPERUSER" in message
    assert "superuser-clients" in message


@pytest.mark.parametrize(
    "role",
    [
        "pg_execute_server_program",
        "pg_read_server_files",
        "PG_WRITE_SERVER_FILES",
        "pg_signal_backend",
        "pg_checkpoint",
        "postgres",
        "operator",
        "replication",
        "rewind",
        "monitoring",
        "backup",
        "relation_3",
        "relation_3_0a1b2c3d",
        "mydb_owner",
        "otherdb_owner",
        "login",
        "bypassrls",
        "admin",
        "createdb;drop role operator",
        'pg_monitor"',
        "public",
    ],
)
def test_dangerous_extra_user_roles_are_refused(role: str):
    message = refusal(extra_user_roles=f"createdb,{role}")
    assert "extra-user-roles" in message
    assert "not allowed" in message


def test_superuser_from_an_allowed_app_does_not_open_other_roles():
    assert "pg_read_server_files" in refusal(
        app="pgbouncer", extra_user_roles="superuser,pg_read_server_files"
    )


# -- extensions --------------------------------------------------------------------------------


def test_enabled_extensions_are_accepted():
    enabled = frozenset({"citext", "pg_trgm"})
    plan(enabled, extensions="citext,pg_trgm")
    plan(enabled, extensions="citext:1.6, pg_trgm")
    plan(enabled, extensions="pg-trgm")


def test_extension_not_enabled_names_the_option():
    message = refusal(extensions="citext,pg_trgm,hstore")
    assert "plugin-citext-enable=true" in message
    assert "plugin-pg-trgm-enable=true" in message
    assert "plugin-hstore-enable=true" in message
    assert "juju config" in message


def test_only_missing_extensions_are_named():
    with pytest.raises(client_policy.RequestRefusedError) as refused:
        plan(frozenset({"citext"}), extensions="citext,pg_trgm")
    assert "plugin-pg-trgm-enable" in str(refused.value)
    assert "plugin-citext-enable" not in str(refused.value)


@pytest.mark.parametrize("name", ["notanextension", "citext;drop", "CITEXT", "citext'", "../x"])
def test_unknown_or_hostile_extensions_are_refused(name: str):
    assert "not available" in refusal(extensions=name)


@pytest.mark.parametrize("name", ["uuid-ossp", "uuid_ossp"])
def test_uuid_ossp_can_be_requested_once_enabled(name: str):
    plan(frozenset({"uuid-ossp"}), extensions=name)


# -- names the charm makes -------------------------------------------------------------------


def test_owner_role_keeps_short_names():
    assert client_policy.owner_role("mydb") == "mydb_owner"
    assert client_policy.owner_role("x" * 57) == "x" * 57 + "_owner"  # exactly 63 bytes


@pytest.mark.parametrize("length", [58, 60, 63])
def test_owner_role_of_long_names_stays_within_63_bytes(length: int):
    first, second = "a" * length, "a" * (length - 1) + "b"
    owners = {client_policy.owner_role(first), client_policy.owner_role(second)}
    assert len(owners) == 2  # names sharing a long prefix still get distinct owners
    for owner in owners:
        assert len(owner.encode()) <= 63
        assert owner.endswith("_owner")
        assert client_policy.relation_of_user(owner) is None


def test_user_names():
    v0 = request(version="v0", request_id=None)
    assert client_policy.user_name(v0) == "relation_7"
    digest = hashlib.sha256(b"4f1e2b3c9d8a7f6e").hexdigest()[:8]
    assert client_policy.user_name(request()) == f"relation_7_{digest}"
    # A request without an id falls back on its salt.
    salted = client_policy.user_name(request(request_id=None))
    assert salted == f"relation_7_{hashlib.sha256(b'0123456789abcdef').hexdigest()[:8]}"


def test_two_requests_on_one_relation_get_distinct_users():
    first = client_policy.user_name(request(request_id="aaaa"))
    second = client_policy.user_name(request(request_id="bbbb"))
    assert first != second
    assert client_policy.relation_of_user(first) == client_policy.relation_of_user(second) == 7


@pytest.mark.parametrize(
    ("user", "relation_id"),
    [
        ("relation_7", 7),
        ("relation_12_0a1b2c3d", 12),
        ("relation_7_owner", None),
        ("relation_7_0A1B2C3D", None),
        ("relation_7_0a1b2c3", None),
        ("relation_", None),
        ("operator", None),
        ("mydb_owner", None),
        ("xrelation_7", None),
    ],
)
def test_relation_of_user(user: str, relation_id: int | None):
    assert client_policy.relation_of_user(user) == relation_id


def test_planned_user_is_recognised_as_the_charms():
    planned = plan()
    assert client_policy.relation_of_user(planned.user) == 7
    assert planned.owner == "mydb_owner"


# -- rules digest ------------------------------------------------------------------------------


def test_rules_digest_ignores_order_and_duplicates():
    rules = [("a", "relation_1"), ("b", "relation_2"), ("c", "relation_3_0a1b2c3d")]
    digest = client_policy.rules_digest(rules)
    assert client_policy.rules_digest(reversed(rules)) == digest
    assert client_policy.rules_digest([*rules, rules[0]]) == digest
    assert len(digest) == 16
    assert int(digest, 16) >= 0


def test_rules_digest_changes_with_the_rules():
    base = client_policy.rules_digest([("a", "relation_1")])
    assert client_policy.rules_digest([("a", "relation_2")]) != base
    assert client_policy.rules_digest([("b", "relation_1")]) != base
    assert client_policy.rules_digest([]) != base
