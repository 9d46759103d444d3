"""Container layout: member names, DNS names, binary paths and the system users' secret keys."""

from __future__ import annotations

import posixpath

import pytest

from workload import layout


@pytest.mark.parametrize(
    ("unit", "member"),
    [
        ("postgresql-k8s/0", "postgresql-k8s-0"),
        ("db/12", "db-12"),
        ("pg-main/3", "pg-main-3"),
    ],
)
def test_member_name_replaces_the_slash(unit: str, member: str):
    assert layout.member_name(unit) == member


def test_unit_fqdn_goes_through_the_headless_endpoints_service():
    assert layout.unit_fqdn("postgresql-k8s/2", "postgresql-k8s") == (
        "postgresql-k8s-2.postgresql-k8s-endpoints"
    )
    # The application part comes from the app name, not from the unit name.
    assert layout.unit_fqdn("db/0", "other") == "db-0.other-endpoints"


@pytest.mark.parametrize("major", [14, 16, 17])
def test_pg_bin_dir_follows_the_debian_layout(major: int):
    assert layout.pg_bin_dir(major) == f"/usr/lib/postgresql/{major}/bin"


def test_secret_keys_are_unique_and_derived_from_the_user_name():
    keys = [user.secret_key for user in layout.SystemUser]
    assert len(keys) == len(set(keys)) == len(layout.SystemUser)
    assert layout.SystemUser.OPERATOR.secret_key == "operator-password"
    assert layout.SystemUser.PATRONI.secret_key == "patroni-password"
    assert all(
        key == f"{user.value}-password" for user, key in zip(layout.SystemUser, keys, strict=True)
    )


def test_only_the_rest_api_user_is_not_a_database_role():
    roles = {user for user in layout.SystemUser if user.is_database_role}
    assert layout.SystemUser.PATRONI not in roles
    assert roles == set(layout.SystemUser) - {layout.SystemUser.PATRONI}
    assert {user.value for user in roles} == {
        "operator",
        "replication",
        "rewind",
        "monitoring",
        "backup",
    }


def test_system_user_is_a_string():
    # str-valued, so the enum member can be used wherever a role name is expected.
    assert layout.SystemUser("monitoring") is layout.SystemUser.MONITORING
    assert layout.SystemUser.MONITORING == "monitoring"


def test_workload_paths_live_under_home():
    paths = [layout.PGDATA, layout.PATRONI_CONF, layout.ROLE_CHANGE_SCRIPT, *layout.WORKLOAD_DIRS]
    for path in paths:
        assert posixpath.isabs(path)
        assert posixpath.commonpath([path, layout.HOME]) == layout.HOME
    # PGDATA is a sub-directory of the storage mount, so initdb finds an empty directory.
    assert posixpath.dirname(layout.PGDATA) == layout.DATA_MOUNT
    assert posixpath.dirname(layout.PATRONI_CONF) == layout.CONF_DIR


def test_ports_are_distinct():
    ports = [
        layout.PORT_POSTGRESQL,
        layout.PORT_PATRONI,
        layout.PORT_METRICS,
        layout.PORT_PGBOUNCER,
        layout.PORT_PGBOUNCER_METRICS,
        layout.PORT_PGBACKREST_SERVER,
    ]
    assert len(set(ports)) == len(ports)
    assert layout.PORT_POSTGRESQL == 5432
    assert layout.PORT_PATRONI == 8008
