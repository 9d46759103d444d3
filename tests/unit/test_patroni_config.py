"""patroni.yml, the DCS configuration and environment, pg_hba and the role-change callback."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from workload import layout, patroni, pebble

PASSWORDS = {user: f"secret-{user.value}-0123456789" for user in layout.SystemUser}
TLS = patroni.TlsPaths(ca="/tls/ca.pem", cert="/tls/cert.pem", key="/tls/key.pem")


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


def test_render_pg_hba_is_hba_rules():
    rules = (patroni.HbaRule("app", "relation_id_4"),)
    pg = patroni.render(settings(client_rules=rules))["postgresql"]
    assert pg["pg_hba"] == patroni.hba_rules(rules, tls=False)
    assert "host app relation_id_4 0.0.0.0/0 scram-sha-256" in pg["pg_hba"]


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


# render() with TLS


def test_render_with_tls_turns_ssl_on():
    params = patroni.render(settings(tls=TLS))["postgresql"]["parameters"]
    assert params["ssl"] == "on"
    assert params["ssl_ca_file"] == "/tls/ca.pem"
    assert params["ssl_cert_file"] == "/tls/cert.pem"
    assert params["ssl_key_file"] == "/tls/key.pem"


def test_render_with_tls_verifies_the_ca_for_every_connection():
    auth = patroni.render(settings(tls=TLS))["postgresql"]["authentication"]
    assert set(auth) == {"superuser", "replication", "rewind"}
    for entry in auth.values():
        assert entry["sslmode"] == "verify-ca"
        assert entry["sslrootcert"] == "/tls/ca.pem"
    assert auth["replication"]["password"] == PASSWORDS[layout.SystemUser.REPLICATION]


def test_render_with_tls_serves_the_rest_api_over_https():
    restapi = patroni.render(settings(tls=TLS))["restapi"]
    assert restapi["certfile"] == "/tls/cert.pem"
    assert restapi["keyfile"] == "/tls/key.pem"
    assert restapi["cafile"] == "/tls/ca.pem"
    assert restapi["verify_client"] == "none"
    assert restapi["authentication"]["username"] == "patroni"


def test_render_with_tls_configures_patronictl():
    config = patroni.render(settings(tls=TLS))
    assert config["ctl"] == {
        "cacert": "/tls/ca.pem",
        "certfile": "/tls/cert.pem",
        "keyfile": "/tls/key.pem",
    }


def test_render_with_tls_uses_hostssl():
    rules = (patroni.HbaRule("app", "relation_id_4"),)
    hba = patroni.render(settings(tls=TLS, client_rules=rules))["postgresql"]["pg_hba"]
    assert hba == patroni.hba_rules(rules, tls=True)
    assert not [line for line in hba if line.startswith("host ")]
    assert "hostssl app relation_id_4 0.0.0.0/0 scram-sha-256" in hba


def test_tls_does_not_change_the_cluster_wide_configuration():
    assert patroni.render(settings(tls=TLS))["bootstrap"]["dcs"] == patroni.dynamic_config(
        settings()
    )


# dynamic_config()


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


@pytest.mark.parametrize("strict", [True, False])
def test_dynamic_config_strict_flag(strict: bool):
    dcs = patroni.dynamic_config(settings(synchronous_mode_strict=strict))
    assert dcs["synchronous_mode_strict"] is strict


def test_dynamic_config_base_parameters_without_user_parameters():
    params = patroni.dynamic_config(settings())["postgresql"]["parameters"]
    assert params == patroni.BASE_PARAMETERS
    assert params["password_encryption"] == "scram-sha-256"
    assert params["wal_level"] == "logical"
    # A copy: changing the rendered config must not change the module's defaults.
    params["wal_level"] = "minimal"
    assert patroni.BASE_PARAMETERS["wal_level"] == "logical"


def test_dynamic_config_merges_user_parameters_and_the_user_wins():
    user = {"max_connections": "200", "wal_keep_size": "1GB"}
    params = patroni.dynamic_config(settings(parameters=user))["postgresql"]["parameters"]
    assert params["max_connections"] == "200"
    assert params["wal_keep_size"] == "1GB"
    assert params["hot_standby"] == "on"
    assert set(params) == set(patroni.BASE_PARAMETERS) | {"max_connections"}


# hba_rules()


def test_hba_rules_system_users_without_tls():
    assert patroni.hba_rules((), tls=False) == [
        "local all operator scram-sha-256",
        "local all monitoring scram-sha-256",
        "local all backup scram-sha-256",
        "host replication replication 0.0.0.0/0 scram-sha-256",
        "host replication replication ::0/0 scram-sha-256",
        "host all operator 0.0.0.0/0 scram-sha-256",
        "host all operator ::0/0 scram-sha-256",
        "host all rewind 0.0.0.0/0 scram-sha-256",
        "host all rewind ::0/0 scram-sha-256",
        "host all monitoring 0.0.0.0/0 scram-sha-256",
        "host all monitoring ::0/0 scram-sha-256",
    ]


@pytest.mark.parametrize("tls", [True, False])
def test_hba_rules_only_scram_never_trust(tls: bool):
    rules = (patroni.HbaRule("db", "user"), patroni.HbaRule("db", "other", address="10.0.0.0/8"))
    lines = patroni.hba_rules(rules, tls=tls)
    for line in lines:
        assert line.split()[-1] == "scram-sha-256"
        for weak in ("trust", "md5", "password", "ident", "peer"):
            assert weak not in line.split()


def test_hba_rules_with_tls_every_network_rule_is_hostssl():
    lines = patroni.hba_rules((patroni.HbaRule("db", "user"),), tls=True)
    kinds = {line.split()[0] for line in lines}
    assert kinds == {"local", "hostssl"}
    assert "hostssl replication replication ::0/0 scram-sha-256" in lines


def test_hba_rules_client_rules_come_last_in_order():
    rules = (
        patroni.HbaRule("orders", "relation_id_7"),
        patroni.HbaRule("billing", "relation_id_9", address="10.1.0.0/16"),
    )
    system = patroni.hba_rules((), tls=False)
    lines = patroni.hba_rules(rules, tls=False)
    assert lines[: len(system)] == system
    assert lines[len(system) :] == [
        "host orders relation_id_7 0.0.0.0/0 scram-sha-256",
        "host orders relation_id_7 ::0/0 scram-sha-256",
        "host billing relation_id_9 10.1.0.0/16 scram-sha-256",
    ]


def test_hba_rule_connection_type_is_replaced_by_the_tls_choice():
    # A client rule's own connection type does not bypass hostssl.
    rule = patroni.HbaRule("db", "user", address="192.168.0.0/24", connection_type="host")
    assert patroni.hba_rules((rule,), tls=True)[-1] == (
        "hostssl db user 192.168.0.0/24 scram-sha-256"
    )


def test_hba_rule_render():
    assert patroni.HbaRule("db", "u").render() == "host db u 0.0.0.0/0 scram-sha-256"
    assert patroni.HbaRule("db", "u", "::1/128", "hostssl").render() == (
        "hostssl db u ::1/128 scram-sha-256"
    )


# dump()


def test_dump_is_deterministic():
    first = patroni.dump(patroni.render(settings(tls=TLS)))
    second = patroni.dump(patroni.render(settings(tls=TLS)))
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


@pytest.mark.parametrize("tls", [None, TLS])
def test_dump_round_trips_through_yaml(tls: patroni.TlsPaths | None):
    config = patroni.render(settings(tls=tls, client_rules=(patroni.HbaRule("db", "u"),)))
    loaded = yaml.safe_load(patroni.dump(config))
    # JSON normalises tuples to lists, exactly as YAML does.
    assert loaded == json.loads(json.dumps(config))
    assert loaded["postgresql"]["bin_dir"] == "/usr/lib/postgresql/16/bin"
    assert loaded["bootstrap"]["dcs"]["synchronous_mode"] is True
    assert loaded["postgresql"]["parameters"]["log_file_mode"] == "0600"  # stays a string


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
    for tls in (False, True):
        for metrics in (False, True):
            layer = json.dumps(pebble.postgresql_layer(env, metrics_enabled=metrics, tls=tls))
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
