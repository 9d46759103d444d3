"""Patroni's configuration (patroni.yml and DCS environment) as pure builders, and its REST client."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from workload import layout
from workload.patroni_client import (
    ClusterStatus,
    Member,
    PatroniClient,
    PatroniError,
    PatroniRequestError,
    PatroniUnreachableError,
    SwitchoverRefusedError,
)

__all__ = [
    "ClusterStatus",
    "HbaRule",
    "Member",
    "PatroniClient",
    "PatroniError",
    "PatroniRequestError",
    "PatroniSettings",
    "PatroniUnreachableError",
    "SwitchoverRefusedError",
    "TlsPaths",
    "dcs_environment",
    "dump",
    "dynamic_config",
    "hba_rules",
    "render",
    "role_change_script",
]

# Leader lease and loop, within Patroni's rule loop_wait + 2 * retry_timeout <= ttl. A ttl of 30 s
# bounds the write outage after a primary vanishes with its leader key (see workload notes).
TTL = 30
LOOP_WAIT = 10
RETRY_TIMEOUT = 10
# A replica further behind than this (bytes) is not a failover candidate.
MAXIMUM_LAG_ON_FAILOVER = 1048576

# Parameters Patroni needs cluster-wide whatever the user configures.
BASE_PARAMETERS: dict[str, str] = {
    "password_encryption": "scram-sha-256",
    "wal_level": "logical",
    "hot_standby": "on",
    "wal_log_hints": "on",
    "max_wal_senders": "16",
    "max_replication_slots": "16",
    "wal_keep_size": "128MB",
    "archive_mode": "on",
    "archive_command": "/bin/true",
}


@dataclasses.dataclass(frozen=True)
class HbaRule:
    """One pg_hba.conf line; every rule the charm writes authenticates with scram-sha-256."""

    database: str
    user: str
    address: str = "0.0.0.0/0"
    connection_type: str = "host"

    def render(self) -> str:
        """The rule as a pg_hba.conf line."""
        return f"{self.connection_type} {self.database} {self.user} {self.address} scram-sha-256"


@dataclasses.dataclass(frozen=True)
class TlsPaths:
    """Certificate files in the container, once the unit has TLS material."""

    ca: str
    cert: str
    key: str


@dataclasses.dataclass(frozen=True)
class PatroniSettings:
    """Everything patroni.yml depends on; two equal settings render byte-identical files."""

    scope: str
    member: str
    connect_host: str
    pg_major: int
    passwords: Mapping[layout.SystemUser, str]
    parameters: Mapping[str, str]
    synchronous_node_count: int
    synchronous_mode_strict: bool
    client_rules: Sequence[HbaRule] = ()
    tls: TlsPaths | None = None
    # A member whose unit is being removed: never a synchronous standby nor a failover target,
    # so that the cluster's synchronous set moves to members that stay before it leaves.
    departing: bool = False
    # WAL archiving (pgBackRest's archive-push once a repository is ready).
    archive_command: str = "/bin/true"
    # Bootstrap by restoring a backup instead of initdb (a restore in progress on this member).
    restore_command: str | None = None


def hba_rules(client_rules: Sequence[HbaRule], tls: bool) -> list[str]:
    """pg_hba.conf: the system users first, then one rule per client user and database.

    With TLS on, every network rule becomes `hostssl`, so no password crosses the wire in clear.
    """
    host = "hostssl" if tls else "host"
    system = [
        HbaRule("all", layout.SystemUser.OPERATOR.value, connection_type="local", address=""),
        HbaRule("all", layout.SystemUser.MONITORING.value, connection_type="local", address=""),
        # pgBackRest reaches its own member's server through the socket only.
        HbaRule("all", layout.SystemUser.BACKUP.value, connection_type="local", address=""),
        HbaRule("replication", layout.SystemUser.REPLICATION.value),
        HbaRule("all", layout.SystemUser.OPERATOR.value),
        HbaRule("all", layout.SystemUser.REWIND.value),
        HbaRule("all", layout.SystemUser.MONITORING.value),
    ]
    lines: list[str] = []
    for rule in [*system, *client_rules]:
        if rule.connection_type == "local":
            lines.append(f"local {rule.database} {rule.user} scram-sha-256")
            continue
        for address in (rule.address, "::0/0") if rule.address == "0.0.0.0/0" else (rule.address,):
            lines.append(dataclasses.replace(rule, connection_type=host, address=address).render())
    return lines


def dynamic_config(settings: PatroniSettings) -> dict[str, Any]:
    """The cluster-wide (DCS) configuration: bootstrap value, and what the leader PATCHes later."""
    return {
        "ttl": TTL,
        "loop_wait": LOOP_WAIT,
        "retry_timeout": RETRY_TIMEOUT,
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        "failsafe_mode": True,
        "synchronous_mode": True,
        "synchronous_mode_strict": settings.synchronous_mode_strict,
        "synchronous_node_count": max(settings.synchronous_node_count, 1),
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                **BASE_PARAMETERS,
                **settings.parameters,
                "archive_command": settings.archive_command,
            },
        },
    }


def _local_parameters(settings: PatroniSettings) -> dict[str, str]:
    params = {
        "unix_socket_directories": layout.SOCKET_DIR,
        "logging_collector": "on",
        "log_directory": layout.PG_LOG_DIR,
        "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
        "log_file_mode": "0600",
        "log_rotation_age": "1d",
        "log_rotation_size": "100MB",
    }
    if settings.tls:
        params |= {
            "ssl": "on",
            "ssl_ca_file": settings.tls.ca,
            "ssl_cert_file": settings.tls.cert,
            "ssl_key_file": settings.tls.key,
        }
    return params


def _authentication(settings: PatroniSettings) -> dict[str, dict[str, str]]:
    users = {
        "superuser": layout.SystemUser.OPERATOR,
        "replication": layout.SystemUser.REPLICATION,
        "rewind": layout.SystemUser.REWIND,
    }
    auth: dict[str, dict[str, str]] = {}
    for kind, user in users.items():
        auth[kind] = {"username": user.value, "password": settings.passwords[user]}
        if settings.tls:
            auth[kind] |= {"sslmode": "verify-ca", "sslrootcert": settings.tls.ca}
    return auth


def _restapi(settings: PatroniSettings) -> dict[str, Any]:
    restapi: dict[str, Any] = {
        "listen": f"0.0.0.0:{layout.PORT_PATRONI}",
        "connect_address": f"{settings.connect_host}:{layout.PORT_PATRONI}",
        "authentication": {
            "username": layout.SystemUser.PATRONI.value,
            "password": settings.passwords[layout.SystemUser.PATRONI],
        },
    }
    if settings.tls:
        restapi |= {
            "certfile": settings.tls.cert,
            "keyfile": settings.tls.key,
            "cafile": settings.tls.ca,
            "verify_client": "none",
        }
    return restapi


def _bootstrap(settings: PatroniSettings) -> dict[str, Any]:
    bootstrap: dict[str, Any] = {
        "dcs": dynamic_config(settings),
        "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
    }
    if settings.restore_command:
        # pgBackRest writes the recovery settings (target, restore_command): Patroni keeps them,
        # lets PostgreSQL reach the target and promote, then takes the leader key.
        bootstrap["method"] = "pgbackrest"
        bootstrap["pgbackrest"] = {
            "command": settings.restore_command,
            "keep_existing_recovery_conf": True,
            "no_params": True,
        }
    return bootstrap


def render(settings: PatroniSettings) -> dict[str, Any]:
    """patroni.yml as a dict; DCS settings are left to environment variables (dcs_environment)."""
    config: dict[str, Any] = {
        "scope": settings.scope,
        "name": settings.member,
        "log": {"level": "INFO"},
        "restapi": _restapi(settings),
        "bootstrap": _bootstrap(settings),
        "postgresql": {
            "listen": f"0.0.0.0:{layout.PORT_POSTGRESQL}",
            "connect_address": f"{settings.connect_host}:{layout.PORT_POSTGRESQL}",
            "data_dir": layout.PGDATA,
            "bin_dir": layout.pg_bin_dir(settings.pg_major),
            "pgpass": f"{layout.CONF_DIR}/pgpass",
            "authentication": _authentication(settings),
            "parameters": _local_parameters(settings),
            "pg_hba": hba_rules(settings.client_rules, tls=settings.tls is not None),
            "callbacks": {"on_role_change": layout.ROLE_CHANGE_SCRIPT},
            "basebackup": [{"checkpoint": "fast"}],
            # A former primary that cannot be rewound held nothing a client was told was
            # committed (synchronous mode), so it is safe to re-clone it from the leader.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "watchdog": {"mode": "off"},
        "tags": {
            "nofailover": settings.departing,
            "noloadbalance": False,
            "clonefrom": False,
            "nosync": settings.departing,
        },
    }
    if settings.tls:
        config["ctl"] = {
            "cacert": settings.tls.ca,
            "certfile": settings.tls.cert,
            "keyfile": settings.tls.key,
        }
    return config


def dump(config: Mapping[str, Any]) -> str:
    """Serialise a configuration deterministically, so equal inputs give equal files."""
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=True, default_flow_style=False)


def dcs_environment(scope: str, namespace: str, pod_ip: str) -> dict[str, str]:
    """Patroni's Kubernetes DCS settings as environment variables for the Pebble layer.

    They travel as PATRONI_KUBERNETES_* variables, not in patroni.yml, so that a test substrate
    can swap the DCS by translating environment variables alone. ConfigMaps, not Endpoints
    (deprecated from Kubernetes 1.33), hold the leader and config keys.
    """
    return {
        "PATRONI_KUBERNETES_NAMESPACE": namespace,
        "PATRONI_KUBERNETES_LABELS": json.dumps({"application": "patroni", "cluster-name": scope}),
        "PATRONI_KUBERNETES_USE_ENDPOINTS": "false",
        "PATRONI_KUBERNETES_BYPASS_API_SERVICE": "true",
        "PATRONI_KUBERNETES_POD_IP": pod_ip,
        "PATRONI_KUBERNETES_LEADER_LABEL_VALUE": "primary",
        "PATRONI_KUBERNETES_FOLLOWER_LABEL_VALUE": "replica",
    }


def role_change_script() -> str:
    """Patroni's on_role_change callback: tell the charm through a Pebble custom notice.

    Patroni calls it as `script <action> <role> <scope>`; the charm reacts to the notice instead
    of polling for role changes.
    """
    return (
        "#!/bin/sh\n"
        "# Installed by the charm: Patroni runs this when this member's role changes.\n"
        f'exec pebble notify {layout.ROLE_CHANGE_NOTICE} "role=$2" "action=$1"\n'
    )
