"""What a client request may get: database names, extra-user-roles, extensions, user names."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from dpcharmlibs import interfaces

import client_options
from components import client_policy
from relations.database import ClientRequest

# The operator's decisions in these tests: relation 7 of myapp may have every elevated privilege,
# relation 9 of pgbouncer-k8s superuser only.
ALLOWED = {
    ("myapp", 7): frozenset(client_options.ELEVATED_PRIVILEGES),
    ("pgbouncer-k8s", 9): frozenset({"superuser"}),
}


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
    return client_policy.plan(request(**changes), enabled, ALLOWED)


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


@pytest.mark.parametrize("roles", ["superuser", "SUPERUSER", "superuser,createdb"])
def test_superuser_where_the_operator_allowed_it(roles: str):
    planned = plan(app="pgbouncer-k8s", relation_id=9, extra_user_roles=roles)
    assert planned.superuser
    assert planned.elevated


@pytest.mark.parametrize("privilege", sorted(client_options.ELEVATED_PRIVILEGES))
@pytest.mark.parametrize(
    ("app", "relation_id"),
    # Another application; the same name on another relation; no decision at all.
    [("otherapp", 7), ("myapp", 8), ("pgbouncer", 9), ("pgbouncer-k8s", 10)],
)
def test_elevated_privileges_need_a_decision_for_this_relation(
    privilege: str, app: str, relation_id: int
):
    message = refusal(app=app, relation_id=relation_id, extra_user_roles=f"createdb,{privilege}")
    assert privilege in message
    assert f"client-privileges={app}/{relation_id}:{privilege}" in message


def test_a_decision_covers_only_the_privileges_it_names():
    assert "createrole" in refusal(
        app="pgbouncer-k8s", relation_id=9, extra_user_roles="superuser,createrole"
    )


def test_ordinary_roles_need_no_decision():
    planned = plan(
        app="otherapp",
        extra_user_roles="createdb,pg_read_all_settings,pg_stat_scan_tables",
    )
    assert planned.createdb
    assert not planned.elevated


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


def test_superuser_allowed_does_not_open_other_roles():
    assert "pg_read_server_files" in refusal(
        app="pgbouncer-k8s", relation_id=9, extra_user_roles="superuser,pg_read_server_files"
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


# -- bounds and ownership ----------------------------------------------------------------------


def test_requests_beyond_the_bound_are_refused_naming_the_relation():
    problems: dict[str, str] = {}
    many = [request(relation_id=7, request_id=f"{i:016x}", database=f"db{i}") for i in range(100)]
    kept = client_policy.bounded([*many, request(relation_id=8)], problems)
    assert len([r for r in kept if r.relation_id == 7]) == client_policy.MAX_REQUESTS_PER_RELATION
    assert [r.relation_id for r in kept].count(8) == 1
    assert set(problems) == {"7"}
    assert "100 requests" in problems["7"]


def _claim(
    plans: list[client_policy.ClientPlan],
    owners: dict[str, str] | None = None,
    sharing: dict[str, frozenset[str]] | None = None,
) -> tuple[list[int], dict[str, str], dict[str, str]]:
    problems: dict[str, str] = {}
    kept, owners = client_policy.claim(plans, owners or {}, sharing or {}, problems, "pg")
    return [p.request.relation_id for p in kept], owners, problems


def test_a_database_belongs_to_the_first_application_that_asked():
    first = plan(app="shop", relation_id=3, database="orders")
    second = plan(app="evil", relation_id=5, database="orders")
    kept, owners, problems = _claim([second, first])
    assert kept == [3]
    assert owners == {"orders": "shop"}
    assert "belongs to shop (relation 3)" in problems["5"]
    assert "shared-databases=orders:shop+evil" in problems["5"]


def test_a_database_stays_its_owners_after_its_relations_are_gone():
    kept, _, problems = _claim([plan(app="evil", relation_id=5)], {"mydb": "shop"})
    assert kept == []
    assert "belongs to shop;" in problems["5"]


def test_the_same_application_on_another_relation_gets_its_database_back():
    kept, _, problems = _claim([plan(app="shop", relation_id=9)], {"mydb": "shop"})
    assert (kept, problems) == ([9], {})


def test_sharing_needs_both_applications_listed_for_that_database():
    plans = [plan(app="shop", relation_id=3), plan(app="reports", relation_id=4)]
    assert _claim(plans, sharing={"mydb": frozenset({"shop", "reports"})})[0] == [3, 4]
    assert _claim(plans, sharing={"other": frozenset({"shop", "reports"})})[0] == [3]
    assert _claim(plans, sharing={"mydb": frozenset({"reports", "x"})})[0] == [3]


@pytest.mark.parametrize("major", [14, 15])
def test_createrole_is_never_offered_before_postgresql_16(major: int):
    with pytest.raises(client_policy.RequestRefusedError, match="pg_execute_server_program"):
        client_policy.plan(
            request(extra_user_roles="createrole"), frozenset(), ALLOWED, "pg", major
        )
    assert client_policy.plan(
        request(extra_user_roles="createdb"), frozenset(), ALLOWED, "pg", major
    )


def test_createrole_on_16_where_allowed():
    assert client_policy.plan(
        request(extra_user_roles="createrole"), frozenset(), ALLOWED, "pg", 16
    ).createrole
