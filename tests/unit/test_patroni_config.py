"""patroni.yml, the DCS configuration and environment, pg_hba and the role-change callback."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

import goal
from workload import layout, patroni, pebble

PASSWORDS = {user: f"secret-{user.value}-0123456789" for user in layout.SystemUser}


def settings(**overrides: Any) -> patroni.PatroniSettings:
    values: dict[str, Any] = {
        "scope": "postgresql-k8s",
        "member": "postgresql-k8s-1",
        "connect_host": "postgresql-k8s-1.postgresql-k8s-endpoints",
        "pg_major": 16,
        "passwords": PASSWORDS,
        "parameters": {},
        "synchronous_node_count": 1,
        "synchronous_mode_strict": False,
    }
    return patroni.PatroniSettings(**(values | overrides))


# render()


def test_render_names_the_cluster_and_the_member():
    config = patroni.render(settings())
    assert config["scope"] == "postgresql-k8s"
    assert config["name"] == "postgresql-k8s-1"


def test_render_restapi():
    restapi = patroni.render(settings())["restapi"]
    assert restapi == {
        "listen": "0.0.0.0:8008",
        "connect_address": "postgresql-k8s-1.postgresql-k8s-endpoints:8008",
        "authentication": {
            "username": "patroni",
            "password": PASSWORDS[layout.SystemUser.PATRONI],
        },
    }


def test_render_postgresql_paths_follow_the_major_version():
    pg = patroni.render(settings(pg_major=17))["postgresql"]
    assert pg["data_dir"] == "/var/lib/postgresql/data/pgdata"
    assert pg["bin_dir"] == "/usr/lib/postgresql/17/bin"
    assert pg["listen"] == "0.0.0.0:5432"
    assert pg["connect_address"] == "postgresql-k8s-1.postgresql-k8s-endpoints:5432"
    assert pg["pgpass"].startswith(layout.CONF_DIR + "/")
    assert patroni.render(settings(pg_major=14))["postgresql"]["bin_dir"] == (
        "/usr/lib/postgresql/14/bin"
    )


def test_render_authentication_takes_the_users_passwords():
    auth = patroni.render(settings())["postgresql"]["authentication"]
    assert auth == {
        "superuser": {"username": "operator", "password": PASSWORDS[layout.SystemUser.OPERATOR]},
        "replication": {
            "username": "replication",
            "password": PASSWORDS[layout.SystemUser.REPLICATION],
        },
        "rewind": {"username": "rewind", "password": PASSWORDS[layout.SystemUser.REWIND]},
    }


def test_render_without_a_password_is_an_error():
    passwords = {u: p for u, p in PASSWORDS.items() if u is not layout.SystemUser.REWIND}
    with pytest.raises(KeyError):
        patroni.render(settings(passwords=passwords))


def test_render_local_parameters():
    params = patroni.render(settings())["postgresql"]["parameters"]
    assert params["unix_socket_directories"] == layout.SOCKET_DIR == "/var/lib/postgresql/run"
    assert params["log_directory"] == layout.PG_LOG_DIR
    assert params["logging_collector"] == "on"
    assert params["log_file_mode"] == "0600"
    assert not any(key.startswith("ssl") for key in params)


def test_render_pg_hba_is_the_system_rules_then_the_extra_ones():
    rules = (patroni.HbaRule("app", "relation_id_4"),)
    pg = patroni.render(settings(), extra_hba=rules)["postgresql"]
    assert pg["pg_hba"] == patroni.render_hba([*patroni.system_hba(), *rules])
    assert pg["pg_hba"][-2:] == [
        "host app relation_id_4 0.0.0.0/0 scram-sha-256",
        "host app relation_id_4 ::0/0 scram-sha-256",
    ]
    assert patroni.render(settings())["postgresql"]["pg_hba"] == patroni.render_hba(
        patroni.system_hba()
    )


def test_render_bootstrap_and_callbacks():
    config = patroni.render(settings(synchronous_node_count=2))
    assert config["bootstrap"]["dcs"] == patroni.dynamic_config(settings(synchronous_node_count=2))
    assert "data-checksums" in config["bootstrap"]["initdb"]
    assert {"encoding": "UTF8"} in config["bootstrap"]["initdb"]
    assert config["postgresql"]["callbacks"] == {"on_role_change": layout.ROLE_CHANGE_SCRIPT}
    assert config["watchdog"] == {"mode": "off"}
    assert config["tags"]["nofailover"] is False
    assert config["tags"]["nosync"] is False


def test_render_leaves_dcs_settings_to_the_environment():
    config = patroni.render(settings())
    for dcs in ("kubernetes", "etcd", "etcd3", "consul", "zookeeper", "raft"):
        assert dcs not in config
    assert "ctl" not in config


def test_render_departing_member_is_never_a_failover_or_sync_target():
    tags = patroni.render(settings(departing=True))["tags"]
    assert tags["nofailover"] is True
    assert tags["nosync"] is True
    assert tags["noloadbalance"] is False


# member_config(): what one member contributes; the goal adds bootstrap.dcs and pg_hba


def test_member_config_leaves_the_cluster_wide_part_and_pg_hba_to_others():
    member = patroni.member_config(settings())
    assert "dcs" not in member["bootstrap"]
    assert "pg_hba" not in member["postgresql"]
    # render() is exactly the member part plus those two.
    whole = patroni.render(settings())
    assert whole["bootstrap"]["dcs"] == patroni.dynamic_config(settings())
    assert whole["postgresql"]["pg_hba"] == patroni.render_hba(patroni.system_hba())
    del whole["bootstrap"]["dcs"]
    del whole["postgresql"]["pg_hba"]
    assert whole == member


def test_member_config_is_a_fresh_tree_each_time():
    first = patroni.member_config(settings())
    first["postgresql"]["parameters"]["logging_collector"] = "off"
    assert patroni.member_config(settings())["postgresql"]["parameters"]["logging_collector"] == (
        "on"
    )


# bootstrap_from_backup()


def test_bootstrap_from_backup_replaces_initdb_with_the_command():
    command = "pgbackrest --config=/etc/pgbackrest.conf --stanza=pg restore"
    subtree = patroni.bootstrap_from_backup(command)
    assert subtree == {
        "bootstrap": {
            "method": "pgbackrest",
            "pgbackrest": {
                "command": command,
                # pgBackRest wrote the recovery target: Patroni must keep it as it is.
                "keep_existing_recovery_conf": True,
                "no_params": True,
            },
        }
    }
    # It only adds keys next to the member's bootstrap: nothing there has to be overwritten.
    assert not set(subtree["bootstrap"]) & set(patroni.member_config(settings())["bootstrap"])


# dynamic_settings(), cluster_parameters() and dynamic_config()


def test_dynamic_config_turns_synchronous_mode_on():
    dcs = patroni.dynamic_config(settings(synchronous_node_count=2))
    assert dcs["synchronous_mode"] is True
    assert dcs["synchronous_node_count"] == 2
    assert dcs["synchronous_mode_strict"] is False
    assert dcs["failsafe_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["use_slots"] is True


def test_dynamic_config_respects_patroni_timing_rule():
    dcs = patroni.dynamic_config(settings())
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    assert dcs["maximum_lag_on_failover"] == patroni.MAXIMUM_LAG_ON_FAILOVER


@pytest.mark.parametrize(("count", "expected"), [(-3, 1), (0, 1), (1, 1), (2, 2), (5, 5)])
def test_dynamic_config_synchronous_node_count_floor(count: int, expected: int):
    dcs = patroni.dynamic_config(settings(synchronous_node_count=count))
    assert dcs["synchronous_node_count"] == expected
    assert (
        patroni.dynamic_settings(settings(synchronous_node_count=count))["synchronous_node_count"]
        == expected
    )


@pytest.mark.parametrize("strict", [True, False])
def test_dynamic_config_strict_flag(strict: bool):
    dcs = patroni.dynamic_config(settings(synchronous_mode_strict=strict))
    assert dcs["synchronous_mode_strict"] is strict


def test_dynamic_settings_hold_no_postgresql_parameters():
    # Parameters come from several components (archive_command from backups): the goal joins
    # them under postgresql.parameters.
    dynamic = patroni.dynamic_settings(settings(parameters={"max_connections": "200"}))
    assert dynamic["postgresql"] == {"use_pg_rewind": True, "use_slots": True}
    assert "max_connections" not in json.dumps(dynamic)


def test_dynamic_config_is_the_settings_plus_the_parameters():
    value = settings(parameters={"work_mem": "8MB"})
    dcs = patroni.dynamic_config(value)
    parameters = dcs["postgresql"].pop("parameters")
    assert dcs == patroni.dynamic_settings(value)
    assert parameters == {**patroni.cluster_parameters(value), "archive_command": "/bin/true"}


def test_dynamic_config_base_parameters_without_user_parameters():
    params = patroni.dynamic_config(settings())["postgresql"]["parameters"]
    assert params == {**patroni.BASE_PARAMETERS, "archive_command": patroni.NO_ARCHIVE}
    assert patroni.cluster_parameters(settings()) == patroni.BASE_PARAMETERS
    assert params["password_encryption"] == "scram-sha-256"
    assert params["wal_level"] == "logical"
    assert params["archive_mode"] == "on"
    # A copy: changing the rendered config must not change the module's defaults.
    params["wal_level"] = "minimal"
    patroni.cluster_parameters(settings())["hot_standby"] = "off"
    assert patroni.BASE_PARAMETERS["wal_level"] == "logical"
    assert patroni.BASE_PARAMETERS["hot_standby"] == "on"


def test_dynamic_config_takes_the_archive_command():
    command = "pgbackrest --config=/etc/pgbackrest.conf --stanza=pg archive-push %p"
    params = patroni.dynamic_config(settings(), command)["postgresql"]["parameters"]
    assert params["archive_command"] == command
    assert patroni.NO_ARCHIVE == "/bin/true"


def test_dynamic_config_merges_user_parameters_and_the_user_wins():
    user = {"max_connections": "200", "wal_keep_size": "1GB"}
    params = patroni.dynamic_config(settings(parameters=user))["postgresql"]["parameters"]
    assert params["max_connections"] == "200"
    assert params["wal_keep_size"] == "1GB"
    assert params["hot_standby"] == "on"
    assert set(params) == set(patroni.BASE_PARAMETERS) | {"max_connections", "archive_command"}
    assert patroni.cluster_parameters(settings(parameters=user)) == {
        **patroni.BASE_PARAMETERS,
        **user,
    }


# system_hba(), render_hba() and HbaRule


def test_system_hba_rules():
    assert patroni.render_hba(patroni.system_hba()) == [
        "local all operator scram-sha-256",
        "local all monitoring scram-sha-256",
        "local all backup scram-sha-256",
        "host replication replication 0.0.0.0/0 scram-sha-256",
        "host replication replication ::0/0 scram-sha-256",
        "host all operator 0.0.0.0/0 scram-sha-256",
        "host all operator ::0/0 scram-sha-256",
        "host all rewind 0.0.0.0/0 scram-sha-256",
        "host all rewind ::0/0 scram-sha-256",
        "host all monitoring 127.0.0.1/32 scram-sha-256",
        "host all monitoring ::1/128 scram-sha-256",
    ]


def test_each_system_user_reaches_only_what_it_needs_from_where_it_needs():
    lines = patroni.render_hba(patroni.system_hba(["10.1.0.12", "10.1.0.11", "fd00::3"]))
    by_user: dict[str, list[str]] = {}
    for line in lines:
        fields = line.split()
        user = fields[2]
        by_user.setdefault(user, []).append(" ".join(fields[:2] + fields[3:-1]))
    assert by_user == {
        # Patroni and the charm log in as the operator: locally and, like an administrator,
        # from anywhere.
        "operator": ["local all", "host all 0.0.0.0/0", "host all ::0/0"],
        # Streaming replication and pg_rewind: from the members only; replication also from
        # loopback, where Patroni reads its own timeline before following a new primary.
        "replication": [
            "host replication 10.1.0.11/32",
            "host replication 10.1.0.12/32",
            "host replication fd00::3/128",
            "host replication 127.0.0.1/32",
            "host replication ::1/128",
        ],
        "rewind": ["host all 10.1.0.11/32", "host all 10.1.0.12/32", "host all fd00::3/128"],
        # The exporter, from its own pod: the socket or loopback.
        "monitoring": ["local all", "host all 127.0.0.1/32", "host all ::1/128"],
        # pgBackRest: the socket only.
        "backup": ["local all"],
    }
    # Replication never on any other database line, rewind never on replication.
    assert not any(" replication " in line and " rewind " in line for line in lines)


def test_system_hba_keeps_backup_on_the_socket():
    backup = [r for r in patroni.system_hba() if r.user == "backup"]
    assert backup == [patroni.HbaRule("all", "backup", address="", connection_type="local")]


@pytest.mark.parametrize("connection_type", ["host", "hostssl"])
def test_hba_rules_only_scram_never_trust(connection_type: str):
    rules = [
        *patroni.system_hba(),
        patroni.HbaRule("db", "user", connection_type=connection_type),
        patroni.HbaRule("db", "other", address="10.0.0.0/8", connection_type=connection_type),
    ]
    lines = patroni.render_hba(rules)
    assert len(lines) == 11 + 3
    for line in lines:
        assert line.split()[-1] == "scram-sha-256"
        for weak in ("trust", "md5", "password", "ident", "peer"):
            assert weak not in line.split()


def test_render_hba_keeps_the_order_given():
    rules = (
        patroni.HbaRule("orders", "relation_id_7"),
        patroni.HbaRule("billing", "relation_id_9", address="10.1.0.0/16"),
    )
    system = patroni.render_hba(patroni.system_hba())
    lines = patroni.render(settings(), extra_hba=rules)["postgresql"]["pg_hba"]
    assert lines[: len(system)] == system
    assert lines[len(system) :] == [
        "host orders relation_id_7 0.0.0.0/0 scram-sha-256",
        "host orders relation_id_7 ::0/0 scram-sha-256",
        "host billing relation_id_9 10.1.0.0/16 scram-sha-256",
    ]
    # PostgreSQL takes the first rule that matches: reversed input, reversed rules.
    assert patroni.render_hba(list(reversed(rules))) == [
        "host billing relation_id_9 10.1.0.0/16 scram-sha-256",
        "host orders relation_id_7 0.0.0.0/0 scram-sha-256",
        "host orders relation_id_7 ::0/0 scram-sha-256",
    ]


def test_render_hba_of_nothing_is_empty():
    assert patroni.render_hba([]) == []


def test_hba_rule_render():
    assert patroni.HbaRule("db", "u").render() == [
        "host db u 0.0.0.0/0 scram-sha-256",
        "host db u ::0/0 scram-sha-256",
    ]
    assert patroni.HbaRule("db", "u", "::1/128", "hostssl").render() == [
        "hostssl db u ::1/128 scram-sha-256"
    ]
    assert patroni.HbaRule("db", "u", "all-networks", "hostssl").render() == [
        "hostssl db u 0.0.0.0/0 scram-sha-256",
        "hostssl db u ::0/0 scram-sha-256",
    ]
    # A socket rule has no address, whatever the rule says.
    assert patroni.HbaRule("all", "u", "", "local").render() == ["local all u scram-sha-256"]
    assert patroni.HbaRule("all", "u", connection_type="local").render() == [
        "local all u scram-sha-256"
    ]


# dump()


def test_dump_is_deterministic():
    rules = (patroni.HbaRule("db", "u"),)
    first = patroni.dump(patroni.render(settings(), extra_hba=rules))
    second = patroni.dump(patroni.render(settings(), extra_hba=rules))
    assert first == second


def test_dump_does_not_depend_on_key_order():
    forward = {"b": {"y": 1, "x": [1, 2]}, "a": "z"}
    backward = {"a": "z", "b": {"x": [1, 2], "y": 1}}
    assert patroni.dump(forward) == patroni.dump(backward)
    # Same for settings whose mappings were built in a different order.
    reordered = dict(reversed(list(PASSWORDS.items())))
    params = {"work_mem": "8MB", "max_connections": "100"}
    assert patroni.dump(patroni.render(settings(passwords=reordered, parameters=params))) == (
        patroni.dump(patroni.render(settings(parameters=dict(reversed(list(params.items()))))))
    )


def test_dump_changes_when_settings_change():
    assert patroni.dump(patroni.render(settings())) != patroni.dump(
        patroni.render(settings(synchronous_node_count=2))
    )


@pytest.mark.parametrize("extra_hba", [(), (patroni.HbaRule("db", "u"),)])
def test_dump_round_trips_through_yaml(extra_hba: tuple[patroni.HbaRule, ...]):
    config = patroni.render(settings(), extra_hba=extra_hba)
    # As the goal joins a restore's bootstrap into the member's.
    config = goal.merge(config, patroni.bootstrap_from_backup("pgbackrest restore"))
    loaded = yaml.safe_load(patroni.dump(config))
    # JSON normalises tuples to lists, exactly as YAML does.
    assert loaded == json.loads(json.dumps(config))
    assert loaded["postgresql"]["bin_dir"] == "/usr/lib/postgresql/16/bin"
    assert loaded["postgresql"]["pg_hba"] == patroni.render_hba(
        [*patroni.system_hba(), *extra_hba]
    )
    assert loaded["bootstrap"]["pgbackrest"]["keep_existing_recovery_conf"] is True
    assert loaded["bootstrap"]["dcs"]["synchronous_mode"] is True
    assert "data-checksums" in loaded["bootstrap"]["initdb"]
    assert loaded["postgresql"]["parameters"]["log_file_mode"] == "0600"  # stays a string


def test_dump_round_trip_keeps_the_dynamic_configuration():
    config = patroni.render(settings())
    loaded = yaml.safe_load(patroni.dump(config))
    assert loaded["bootstrap"]["dcs"]["synchronous_mode"] is True
    assert loaded["bootstrap"]["dcs"]["postgresql"]["parameters"]["archive_mode"] == "on"
    assert loaded["bootstrap"]["dcs"] == patroni.dynamic_config(settings())


def test_dump_keeps_string_values_that_look_like_other_types():
    text = patroni.dump({"on": "on", "n": "0600", "b": "true", "none": "null"})
    assert yaml.safe_load(text) == {"on": "on", "n": "0600", "b": "true", "none": "null"}


# dcs_environment()


def test_dcs_environment():
    env = patroni.dcs_environment("postgresql-k8s", "prod", "10.1.2.3")
    assert env == {
        "PATRONI_KUBERNETES_NAMESPACE": "prod",
        "PATRONI_KUBERNETES_LABELS": env["PATRONI_KUBERNETES_LABELS"],
        "PATRONI_KUBERNETES_USE_ENDPOINTS": "false",
        "PATRONI_KUBERNETES_BYPASS_API_SERVICE": "true",
        "PATRONI_KUBERNETES_POD_IP": "10.1.2.3",
        "PATRONI_KUBERNETES_LEADER_LABEL_VALUE": "primary",
        "PATRONI_KUBERNETES_FOLLOWER_LABEL_VALUE": "replica",
    }
    assert json.loads(env["PATRONI_KUBERNETES_LABELS"]) == {
        "application": "patroni",
        "cluster-name": "postgresql-k8s",
    }


def test_dcs_environment_only_holds_kubernetes_dcs_strings():
    env = patroni.dcs_environment("scope", "ns", "10.0.0.1")
    assert all(key.startswith("PATRONI_KUBERNETES_") for key in env)
    assert all(isinstance(value, str) for value in env.values())


def test_no_password_in_the_environment_or_the_pebble_layer():
    env = patroni.dcs_environment("postgresql-k8s", "prod", "10.1.2.3")
    for metrics in (False, True):
        layer = json.dumps(pebble.postgresql_layer(env, metrics_enabled=metrics))
        for password in PASSWORDS.values():
            assert password not in layer
            assert password not in json.dumps(env)
    # The passwords are in patroni.yml, which is where they belong.
    rendered = patroni.dump(patroni.render(settings()))
    assert PASSWORDS[layout.SystemUser.OPERATOR] in rendered
    assert PASSWORDS[layout.SystemUser.MONITORING] not in rendered
    assert PASSWORDS[layout.SystemUser.BACKUP] not in rendered


# role_change_script()


def test_role_change_script_raises_the_pebble_notice():
    script = patroni.role_change_script()
    assert script.startswith("#!/bin/sh\n")
    assert script.endswith("\n")
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    assert exec_line == (f'exec pebble notify {layout.ROLE_CHANGE_NOTICE} "role=$2" "action=$1"')
    assert layout.ROLE_CHANGE_NOTICE == "postgresql-k8s.local/role-change"


def test_settings_are_immutable():
    value = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.scope = "other"  # type: ignore[misc]
    assert value == settings()
