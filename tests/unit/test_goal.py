"""The goal: contributions merged into one patroni.yml, layer, file set and dynamic configuration."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ops
import pytest
import yaml

import charm
import config
import goal
from components import backups, client_policy, system_users
from peer_data import PeerAppData, RestoreState
from relations.s3 import S3State
from state import Snapshot
from tests.unit.builders import APP, s3_fields, snapshot, stanza_digest
from workload import internal_tls, layout, patroni, pebble, pgbackrest

# merge()


def test_merge_joins_nested_trees():
    base = {"a": {"b": 1, "deep": {"x": "1"}}, "top": "t"}
    extra = {"a": {"c": 2, "deep": {"y": "2"}}, "other": [1]}
    assert goal.merge(base, extra) == {
        "a": {"b": 1, "c": 2, "deep": {"x": "1", "y": "2"}},
        "top": "t",
        "other": [1],
    }
    # Neither input changes: a contribution can be merged into several goals.
    assert base == {"a": {"b": 1, "deep": {"x": "1"}}, "top": "t"}
    assert extra == {"a": {"c": 2, "deep": {"y": "2"}}, "other": [1]}


def test_merge_accepts_equal_leaves():
    tree = {"a": {"b": 1, "l": ["x", "y"]}, "s": "same"}
    assert goal.merge(tree, {"a": {"b": 1, "l": ["x", "y"]}, "s": "same"}) == tree


@pytest.mark.parametrize(
    ("base", "extra", "path"),
    [
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}, "a.b.c"),
        ({"top": "x"}, {"top": "y"}, "top"),
        # Lists are leaves: two different lists do not concatenate.
        ({"a": {"l": [1]}}, {"a": {"l": [1, 2]}}, "a.l"),
        # A tree against a leaf.
        ({"a": {"b": 1}}, {"a": 3}, "a"),
        ({"a": 3}, {"a": {"b": 1}}, "a"),
        # None is a value like any other, not "unset".
        ({"a": None}, {"a": 0}, "a"),
    ],
)
def test_merge_conflicting_leaves_raise_naming_the_path(
    base: dict[str, Any], extra: dict[str, Any], path: str
):
    with pytest.raises(goal.ConflictError, match=rf"two components set {path}: ") as caught:
        goal.merge(base, extra)
    assert isinstance(caught.value, ValueError)


def test_merge_conflict_message_shows_both_values():
    with pytest.raises(goal.ConflictError) as caught:
        goal.merge({"postgresql": {"listen": "0.0.0.0:5432"}}, {"postgresql": {"listen": ":1"}})
    assert str(caught.value) == "two components set postgresql.listen: '0.0.0.0:5432' and ':1'"


# cluster_goal()


def test_parameters_from_several_contributions_join_the_dynamic_parameters():
    contributions = [
        goal.Contribution(
            parameters={"wal_level": "logical", "max_connections": "100"},
            dynamic={"ttl": 30, "postgresql": {"use_slots": True}},
        ),
        goal.Contribution(parameters={"archive_command": "/bin/true"}),
        goal.Contribution(dynamic={"loop_wait": 10}),
        goal.Contribution(parameters={"max_connections": "100", "work_mem": "8MB"}),
    ]
    assert goal.cluster_goal(contributions).dynamic == {
        "ttl": 30,
        "loop_wait": 10,
        "postgresql": {
            "use_slots": True,
            "parameters": {
                "wal_level": "logical",
                "max_connections": "100",
                "archive_command": "/bin/true",
                "work_mem": "8MB",
            },
        },
    }


def test_cluster_goal_without_contributions_has_empty_parameters():
    assert goal.cluster_goal([]).dynamic == {"postgresql": {"parameters": {}}}


def test_two_components_setting_one_parameter_differently_raise():
    contributions = [
        goal.Contribution(parameters={"archive_command": "/bin/true"}),
        goal.Contribution(parameters={"archive_command": "pgbackrest archive-push %p"}),
    ]
    with pytest.raises(goal.ConflictError, match="archive_command"):
        goal.cluster_goal(contributions)


def test_a_parameter_set_through_dynamic_and_parameters_differently_raises():
    contributions = [
        goal.Contribution(dynamic={"postgresql": {"parameters": {"work_mem": "4MB"}}}),
        goal.Contribution(parameters={"work_mem": "8MB"}),
    ]
    with pytest.raises(goal.ConflictError, match=r"postgresql\.parameters\.work_mem"):
        goal.cluster_goal(contributions)


def test_two_components_setting_one_dynamic_setting_differently_raise():
    contributions = [
        goal.Contribution(dynamic={"synchronous_mode_strict": False}),
        goal.Contribution(dynamic={"synchronous_mode_strict": True}),
    ]
    with pytest.raises(goal.ConflictError, match="synchronous_mode_strict"):
        goal.cluster_goal(contributions)


# unit_goal()

MEMBER = {"scope": APP, "name": f"{APP}-0", "postgresql": {"listen": "0.0.0.0:5432"}}


def unit(*contributions: goal.Contribution) -> goal.UnitGoal:
    return goal.unit_goal(contributions, goal.cluster_goal(contributions))


def loaded(g: goal.UnitGoal) -> dict[str, Any]:
    return yaml.safe_load(g.patroni_yml)


def test_patroni_yml_is_the_dump_of_the_merged_config_with_the_cluster_goal():
    contributions = [
        goal.Contribution(
            patroni=MEMBER,
            parameters={"wal_level": "logical"},
            dynamic={"ttl": 30},
            hba=[patroni.HbaRule("all", "operator", "", "local")],
        ),
        goal.Contribution(
            patroni={"bootstrap": {"method": "pgbackrest"}, "postgresql": {"pgpass": "/p"}}
        ),
    ]
    cluster = goal.cluster_goal(contributions)
    g = goal.unit_goal(contributions, cluster)
    expected = {
        "scope": APP,
        "name": f"{APP}-0",
        "bootstrap": {"method": "pgbackrest", "dcs": cluster.dynamic},
        "postgresql": {
            "listen": "0.0.0.0:5432",
            "pgpass": "/p",
            "pg_hba": ["local all operator scram-sha-256"],
        },
    }
    assert patroni.CONF_PATH in g.files
    assert g.files[patroni.CONF_PATH] == goal.File(patroni.dump(expected), 0o600)
    assert g.patroni_yml == patroni.dump(expected)
    assert (
        loaded(g)["bootstrap"]["dcs"]
        == cluster.dynamic
        == {
            "ttl": 30,
            "postgresql": {"parameters": {"wal_level": "logical"}},
        }
    )


def test_patroni_yml_exists_even_when_nobody_contributes():
    g = unit()
    assert loaded(g) == {
        "bootstrap": {"dcs": {"postgresql": {"parameters": {}}}},
        "postgresql": {"pg_hba": []},
    }


def test_a_member_setting_that_conflicts_in_patroni_yml_raises():
    contributions = [
        goal.Contribution(patroni=MEMBER),
        goal.Contribution(patroni={"postgresql": {"listen": "0.0.0.0:6432"}}),
    ]
    with pytest.raises(goal.ConflictError, match=r"postgresql\.listen"):
        unit(*contributions)


def test_a_member_subtree_cannot_set_its_own_pg_hba():
    # pg_hba is built from rules only, in contribution order.
    contributions = [
        goal.Contribution(patroni={"postgresql": {"pg_hba": ["host all all 0.0.0.0/0 trust"]}}),
        goal.Contribution(hba=[patroni.HbaRule("db", "u")]),
    ]
    with pytest.raises(goal.ConflictError, match=r"postgresql\.pg_hba"):
        unit(*contributions)


def test_pg_hba_follows_the_contribution_order():
    first = goal.Contribution(
        hba=[patroni.HbaRule("all", "operator", "", "local"), patroni.HbaRule("all", "rewind")]
    )
    second = goal.Contribution(hba=[patroni.HbaRule("orders", "relation_id_7", "10.0.0.0/8")])
    third = goal.Contribution(hba=[patroni.HbaRule("billing", "relation_id_9")])
    assert loaded(unit(first, goal.Contribution(), second, third))["postgresql"]["pg_hba"] == [
        "local all operator scram-sha-256",
        "host all rewind 0.0.0.0/0 scram-sha-256",
        "host all rewind ::0/0 scram-sha-256",
        "host orders relation_id_7 10.0.0.0/8 scram-sha-256",
        "host billing relation_id_9 0.0.0.0/0 scram-sha-256",
        "host billing relation_id_9 ::0/0 scram-sha-256",
    ]
    assert loaded(unit(third, second))["postgresql"]["pg_hba"] == [
        "host billing relation_id_9 0.0.0.0/0 scram-sha-256",
        "host billing relation_id_9 ::0/0 scram-sha-256",
        "host orders relation_id_7 10.0.0.0/8 scram-sha-256",
    ]


def test_hba_ssl_only_makes_every_network_rule_hostssl():
    # One contribution asks; every rule becomes hostssl, whoever contributed it. Socket rules
    # stay local: TLS does not apply to them.
    contributions = [
        goal.Contribution(hba=patroni.system_hba()),
        goal.Contribution(
            hba=[
                patroni.HbaRule("db", "user", address="192.168.0.0/24", connection_type="host"),
                patroni.HbaRule("db", "other", connection_type="hostssl"),
            ]
        ),
        goal.Contribution(hba_ssl_only=True),
    ]
    lines = loaded(unit(*contributions))["postgresql"]["pg_hba"]
    assert {line.split()[0] for line in lines} == {"local", "hostssl"}
    assert "hostssl replication replication ::0/0 scram-sha-256" in lines
    assert "hostssl db user 192.168.0.0/24 scram-sha-256" in lines
    assert lines[:3] == [
        "local all operator scram-sha-256",
        "local all monitoring scram-sha-256",
        "local all backup scram-sha-256",
    ]
    assert len(lines) == len(patroni.render_hba([r for c in contributions for r in c.hba]))
    # Without the flag, the rules stay as contributed.
    plain = loaded(unit(*contributions[:2]))["postgresql"]["pg_hba"]
    assert "host db user 192.168.0.0/24 scram-sha-256" in plain
    assert "hostssl db other 0.0.0.0/0 scram-sha-256" in plain


def test_files_from_several_contributions_are_joined():
    g = unit(
        goal.Contribution(files={"/a": goal.File("A")}),
        goal.Contribution(files={"/b": goal.File("B", 0o755), "/a": goal.File("A")}),
    )
    assert g.files["/a"] == goal.File("A", 0o600)
    assert g.files["/b"] == goal.File("B", 0o755)
    assert set(g.files) == {"/a", "/b", patroni.CONF_PATH}


@pytest.mark.parametrize("other", [goal.File("other"), goal.File("same", 0o644)])
def test_two_contributions_writing_one_file_differently_raise(other: goal.File):
    contributions = [
        goal.Contribution(files={"/conf/x": goal.File("same")}),
        goal.Contribution(files={"/conf/x": other}),
    ]
    with pytest.raises(goal.ConflictError, match="two components write /conf/x"):
        unit(*contributions)


def test_a_file_one_component_writes_and_another_removes_raises():
    with pytest.raises(goal.ConflictError, match="both written and removed"):
        unit(goal.Contribution(files={"/a": goal.File("A")}), goal.Contribution(absent=["/a"]))
    assert unit(goal.Contribution(absent=["/b", "/b"])).absent == ("/b",)


def test_layer_joins_services_and_checks():
    service: ops.pebble.ServiceDict = {"override": "replace", "command": "patroni"}
    other: ops.pebble.ServiceDict = {"override": "replace", "command": "exporter"}
    check: ops.pebble.CheckDict = {"override": "replace", "level": "alive"}
    g = unit(
        goal.Contribution(services={"postgresql": service}, checks={"alive": check}),
        goal.Contribution(services={"metrics": other}),
    )
    assert g.layer["services"] == {"postgresql": service, "metrics": other}
    assert g.layer["checks"] == {"alive": check}
    assert ops.pebble.Layer(g.layer).services["metrics"].command == "exporter"


def test_two_contributions_defining_one_service_differently_raise():
    with pytest.raises(goal.ConflictError, match=r"postgresql\.command"):
        unit(
            goal.Contribution(services={"postgresql": {"command": "patroni a.yml"}}),
            goal.Contribution(services={"postgresql": {"command": "patroni b.yml"}}),
        )


def test_dirs_are_joined_once_in_order():
    g = unit(
        goal.Contribution(dirs=("/a", "/b")),
        goal.Contribution(dirs=("/c", "/a")),
    )
    assert g.dirs == ("/a", "/b", "/c")


@pytest.mark.parametrize(
    ("holds", "expected"),
    [((False, False), False), ((True, False), True), ((False, True), True), ((True, True), True)],
)
def test_hold_and_replan_are_any(holds: tuple[bool, bool], expected: bool):
    held = unit(*(goal.Contribution(hold=h) for h in holds))
    replanned = unit(*(goal.Contribution(replan=h) for h in holds))
    assert held.hold is expected
    assert held.replan is False
    assert replanned.replan is expected
    assert replanned.hold is False


def test_acks_are_merged():
    g = unit(
        goal.Contribution(acks={"client-rules-digest": "abc"}),
        goal.Contribution(),
        goal.Contribution(acks={"pgbackrest-server": "", "client-rules-digest": "abc"}),
    )
    assert g.acks == {"client-rules-digest": "abc", "pgbackrest-server": ""}


def test_conflicting_acks_raise():
    with pytest.raises(goal.ConflictError, match="pgbackrest-server"):
        unit(
            goal.Contribution(acks={"pgbackrest-server": "a"}),
            goal.Contribution(acks={"pgbackrest-server": "b"}),
        )


def test_same_contributions_give_equal_goals():
    def contributions() -> list[goal.Contribution]:
        return [
            goal.Contribution(
                patroni={"scope": APP, "tags": {"nosync": False, "nofailover": False}},
                parameters={"work_mem": "8MB", "max_connections": "100"},
                hba=[patroni.HbaRule("db", "u")],
                services={"postgresql": {"override": "replace", "command": "patroni"}},
                files={"/f": goal.File("x")},
                acks={"k": "v"},
            ),
            goal.Contribution(dynamic={"ttl": 30}, dirs=("/d",), replan=True),
        ]

    first, second = contributions(), contributions()
    assert goal.cluster_goal(first) == goal.cluster_goal(second)
    assert unit(*first) == unit(*second)
    # Key order within a contribution does not reach the file.
    reordered = [
        dataclasses.replace(
            first[0],
            patroni={"tags": {"nofailover": False, "nosync": False}, "scope": APP},
            parameters={"max_connections": "100", "work_mem": "8MB"},
        ),
        first[1],
    ]
    assert unit(*reordered).patroni_yml == unit(*first).patroni_yml


# The real components, each asked for its contribution on one snapshot.

CLIENT_RULES = [("orders", "relation_id_7"), ("billing", "relation_id_9_0a1b2c3d")]


def real_snapshot(**overrides: Any) -> Snapshot:
    values: dict[str, Any] = {
        "users_secret": system_users.initial_content(),
        "peer_data": PeerAppData(client_rules=CLIENT_RULES),
    }
    return snapshot(**(values | overrides))


def real_goal(s: Snapshot) -> tuple[list[goal.Contribution], goal.ClusterGoal, goal.UnitGoal]:
    r = s.ready
    assert r is not None
    contributions = [component.contribute(s, r) for component in charm.COMPONENTS]
    cluster = goal.cluster_goal(contributions)
    return contributions, cluster, goal.unit_goal(contributions, cluster)


def test_real_components_do_not_conflict_and_give_patroni_yml():
    s = real_snapshot()
    _, cluster, g = real_goal(s)
    conf = loaded(g)
    assert conf["scope"] == APP
    assert conf["name"] == f"{APP}-0"
    assert conf["bootstrap"]["dcs"] == cluster.dynamic
    assert "method" not in conf["bootstrap"]  # initdb: no restore is running
    assert g.files[patroni.CONF_PATH].mode == 0o600
    assert g.hold is False
    assert g.replan is False


def test_real_goal_puts_system_rules_first_then_client_rules():
    s = real_snapshot()
    _, _, g = real_goal(s)
    hba = loaded(g)["postgresql"]["pg_hba"]
    # The members known: this unit's own address (its peers have not said theirs).
    assert s.pod_ip is not None
    system = patroni.render_hba(patroni.system_hba([s.pod_ip]))
    assert hba[: len(system)] == system
    # Names are quoted so that a database called "all" or "replication" stays a name.
    assert hba[len(system) :] == [
        'host "orders" "relation_id_7" 0.0.0.0/0 scram-sha-256',
        'host "orders" "relation_id_7" ::0/0 scram-sha-256',
        'host "billing" "relation_id_9_0a1b2c3d" 0.0.0.0/0 scram-sha-256',
        'host "billing" "relation_id_9_0a1b2c3d" ::0/0 scram-sha-256',
    ]


def test_real_goal_without_a_repository_archives_nowhere():
    s = real_snapshot()
    _, cluster, g = real_goal(s)
    parameters = cluster.dynamic["postgresql"]["parameters"]
    assert parameters["archive_command"] == "/bin/true"
    assert parameters["archive_mode"] == "on"
    assert loaded(g)["bootstrap"]["dcs"]["postgresql"]["parameters"] == parameters
    # Every base parameter and every parameter the config gives is there.
    assert cfg_parameters(s).items() <= parameters.items()
    assert not any(path.startswith(pgbackrest.CONF_FILE) for path in g.files)
    assert g.layer["services"][backups.SERVICE]["startup"] == "disabled"


def cfg_parameters(s: Snapshot) -> dict[str, str]:
    assert s.config is not None
    return {
        **patroni.BASE_PARAMETERS,
        **config.postgresql_parameters(s.config, s.container.memory_bytes),
    }


def test_real_goal_layer_and_files():
    s = real_snapshot()
    _, _, g = real_goal(s)
    services = g.layer["services"]
    assert services[layout.SERVICE_POSTGRESQL]["command"] == f"patroni {layout.PATRONI_CONF}"
    # No primary seen yet: the monitoring user may not exist, the exporter waits.
    assert services[layout.SERVICE_METRICS]["startup"] == "disabled"
    assert set(g.layer["checks"]) == {"patroni-alive", "postgresql-ready"}
    assert g.files[layout.ROLE_CHANGE_SCRIPT] == goal.File(patroni.role_change_script(), 0o755)
    assert s.users_secret is not None
    monitoring = s.users_secret[layout.SystemUser.MONITORING.secret_key]
    assert g.files[pebble.PASSWORD_FILE_MONITORING] == goal.File(monitoring, 0o600)
    assert set(layout.WORKLOAD_DIRS) <= set(g.dirs)
    # The plan carries no password: they are in 0600 files only.
    plan = json.dumps(g.layer)
    assert all(password not in plan for password in s.users_secret.values())
    assert ops.pebble.Layer(g.layer).services[layout.SERVICE_POSTGRESQL].user == "postgres"


def test_real_goal_acks_the_client_rules_it_wrote():
    _, _, g = real_goal(real_snapshot())
    assert g.acks["client-rules-digest"] == client_policy.rules_digest(CLIENT_RULES)
    assert g.acks[backups.SERVER_KEY] == ""  # no pgBackRest server runs here


def test_real_goal_is_deterministic():
    s = real_snapshot()
    assert real_goal(s)[1:] == real_goal(s)[1:]


def test_real_goal_with_archiving_on_does_not_conflict():
    tls = internal_tls.generate("pgbackrest", [f"*.{APP}-endpoints"])
    s = real_snapshot(
        s3=S3State(related=True, settings=pgbackrest.s3_settings(s3_fields())),
        backup_tls=tls,
        peer_data=PeerAppData(client_rules=CLIENT_RULES, backup_stanza=stanza_digest()),
    )
    _, cluster, g = real_goal(s)
    command = cluster.dynamic["postgresql"]["parameters"]["archive_command"]
    assert command == pgbackrest.archive_command(pgbackrest.CONF_FILE, APP)
    assert pgbackrest.CONF_FILE in g.files
    assert g.files[backups.TLS_FILES.key_file] == goal.File(tls.key, 0o600)
    assert g.layer["services"][backups.SERVICE]["startup"] == "enabled"
    assert g.acks[backups.SERVER_KEY] == stanza_digest()


@pytest.mark.parametrize(
    ("phase", "restorer", "hold", "method"),
    [
        ("stopping", "", True, None),
        ("restoring", f"{APP}-0", False, "pgbackrest"),
        ("restoring", f"{APP}-1", True, None),
        ("replicas", f"{APP}-1", False, None),
    ],
)
def test_real_goal_during_a_restore(phase: str, restorer: str, hold: bool, method: str | None):
    restore = RestoreState(id="r1", phase=phase, restorer=restorer, backup_id="20260101-000000F")
    s = real_snapshot(peer_data=PeerAppData(client_rules=CLIENT_RULES, restore=restore))
    _, _, g = real_goal(s)
    bootstrap = loaded(g)["bootstrap"]
    assert g.hold is hold
    assert g.replan is not hold  # released: start even if the plan did not change
    assert bootstrap.get("method") == method
    # The restore's bootstrap sits next to the member's own, conflicting with nothing.
    assert "data-checksums" in bootstrap["initdb"]
    if method:
        assert "--set=20260101-000000F" in bootstrap["pgbackrest"]["command"]
