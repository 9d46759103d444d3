"""Patroni's configuration (patroni.yml and DCS environment) as pure builders, and its REST client."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from workload import layout

# The REST client lives in patroni_client; these names stay reachable from here for callers
# that configure and then drive a member (the test substrate).
from workload.patroni_client import (
    ClusterStatus as ClusterStatus,
)
from workload.patroni_client import (
    Member as Member,
)
from workload.patroni_client import (
    PatroniClient as PatroniClient,
)
from workload.patroni_client import (
    PatroniError as PatroniError,
)
from workload.patroni_client import (
    PatroniRequestError as PatroniRequestError,
)
from workload.patroni_client import (
    PatroniUnreachableError as PatroniUnreachableError,
)
from workload.patroni_client import (
    SwitchoverRefusedError as SwitchoverRefusedError,
)

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
}


# Archiving off: WAL segments are recycled as soon as PostgreSQL is done with them.
NO_ARCHIVE = "/bin/true"
CONF_PATH = layout.PATRONI_CONF


@dataclasses.dataclass(frozen=True)
class HbaRule:
    """One pg_hba.conf rule; every rule the charm writes authenticates with scram-sha-256.

    `address` "all-networks" stands for every IPv4 and IPv6 address; "" is the local socket.
    """

    database: str
    user: str
    address: str = "all-networks"
    connection_type: str = "host"

    def render(self) -> list[str]:
        """The rule as pg_hba.conf lines."""
        if self.connection_type == "local":
            return [f"local {self.database} {self.user} scram-sha-256"]
        addresses = ("0.0.0.0/0", "::0/0") if self.address == "all-networks" else (self.address,)
        return [
            f"{self.connection_type} {self.database} {self.user} {address} scram-sha-256"
            for address in addresses
        ]


def render_hba(rules: Sequence[HbaRule]) -> list[str]:
    """pg_hba.conf's lines, in the order given (PostgreSQL uses the first rule that matches)."""
    return [line for rule in rules for line in rule.render()]


LOOPBACK = ("127.0.0.1/32", "::1/128")


def _host(address: str) -> str:
    """One address as a pg_hba network of itself."""
    return f"{address}/128" if ":" in address else f"{address}/32"


def system_hba(peers: Sequence[str] | None = None) -> list[HbaRule]:
    """The system users' rules: what each needs to reach, from where.

    Replication and pg_rewind come from the members (`peers`: every member's address, this one
    included; None for every network, when the members are not known), replication also from
    this pod's loopback, where Patroni reads its own timeline before it follows a new primary;
    the exporter from this pod's loopback; pgBackRest through the socket only. The operator (the
    superuser Patroni and the charm log in as) may come from anywhere, like an administrator
    would.
    """
    local = {"connection_type": "local", "address": ""}
    members = [_host(a) for a in sorted(set(peers))] if peers is not None else ["all-networks"]
    senders = [*members, *LOOPBACK] if peers is not None else members
    replication = layout.SystemUser.REPLICATION.value
    rewind = layout.SystemUser.REWIND.value
    return [
        HbaRule("all", layout.SystemUser.OPERATOR.value, **local),
        HbaRule("all", layout.SystemUser.MONITORING.value, **local),
        HbaRule("all", layout.SystemUser.BACKUP.value, **local),
        *(HbaRule("replication", replication, address=m) for m in senders),
        HbaRule("all", layout.SystemUser.OPERATOR.value),
        *(HbaRule("all", rewind, address=m) for m in members),
        *(HbaRule("all", layout.SystemUser.MONITORING.value, address=a) for a in LOOPBACK),
    ]


@dataclasses.dataclass(frozen=True)
class PatroniSettings:
    """What this member's Patroni configuration depends on; equal settings render equal files."""

    scope: str
    member: str
    connect_host: str
    pg_major: int
    passwords: Mapping[layout.SystemUser, str]
    parameters: Mapping[str, str]
    synchronous_node_count: int
    synchronous_mode_strict: bool
    # A member whose unit is being removed: never a synchronous standby nor a failover target,
    # so that the cluster's synchronous set moves to members that stay before it leaves.
    departing: bool = False


def dynamic_settings(settings: PatroniSettings) -> dict[str, Any]:
    """The cluster-wide (DCS) settings other than PostgreSQL parameters."""
    return {
        "ttl": TTL,
        "loop_wait": LOOP_WAIT,
        "retry_timeout": RETRY_TIMEOUT,
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        "failsafe_mode": True,
        "synchronous_mode": True,
        "synchronous_mode_strict": settings.synchronous_mode_strict,
        "synchronous_node_count": max(settings.synchronous_node_count, 1),
        "postgresql": {"use_pg_rewind": True, "use_slots": True},
    }


def cluster_parameters(settings: PatroniSettings) -> dict[str, str]:
    """The cluster-wide PostgreSQL parameters: what Patroni needs, then the user's."""
    return {**BASE_PARAMETERS, **settings.parameters}


def dynamic_config(settings: PatroniSettings, archive_command: str = NO_ARCHIVE) -> dict[str, Any]:
    """The whole dynamic configuration of a cluster with nothing but PostgreSQL in it."""
    parameters = {**cluster_parameters(settings), "archive_command": archive_command}
    dynamic = dynamic_settings(settings)
    dynamic["postgresql"] = {**dynamic["postgresql"], "parameters": parameters}
    return dynamic


def _local_parameters() -> dict[str, str]:
    return {
        "unix_socket_directories": layout.SOCKET_DIR,
        "logging_collector": "on",
        "log_directory": layout.PG_LOG_DIR,
        "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
        "log_file_mode": "0600",
        "log_rotation_age": "1d",
        "log_rotation_size": "100MB",
    }


def _authentication(settings: PatroniSettings) -> dict[str, dict[str, str]]:
    users = {
        "superuser": layout.SystemUser.OPERATOR,
        "replication": layout.SystemUser.REPLICATION,
        "rewind": layout.SystemUser.REWIND,
    }
    return {
        kind: {"username": user.value, "password": settings.passwords[user]}
        for kind, user in users.items()
    }


def _restapi(settings: PatroniSettings) -> dict[str, Any]:
    return {
        "listen": f"0.0.0.0:{layout.PORT_PATRONI}",
        "connect_address": f"{settings.connect_host}:{layout.PORT_PATRONI}",
        "authentication": {
            "username": layout.SystemUser.PATRONI.value,
            "password": settings.passwords[layout.SystemUser.PATRONI],
        },
    }


def member_config(settings: PatroniSettings) -> dict[str, Any]:
    """patroni.yml without the cluster-wide part (bootstrap.dcs) and pg_hba, which others join.

    DCS settings are left to environment variables (dcs_environment).
    """
    return {
        "scope": settings.scope,
        "name": settings.member,
        "log": {"level": "INFO"},
        "restapi": _restapi(settings),
        "bootstrap": {
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"0.0.0.0:{layout.PORT_POSTGRESQL}",
            "connect_address": f"{settings.connect_host}:{layout.PORT_POSTGRESQL}",
            "data_dir": layout.PGDATA,
            "bin_dir": layout.pg_bin_dir(settings.pg_major),
            "pgpass": f"{layout.CONF_DIR}/pgpass",
            "authentication": _authentication(settings),
            "parameters": _local_parameters(),
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


def bootstrap_from_backup(command: str) -> dict[str, Any]:
    """The patroni.yml subtree that bootstraps by restoring a backup instead of initdb.

    pgBackRest writes the recovery settings (target, restore_command): Patroni keeps them, lets
    PostgreSQL reach the target and promote, then takes the leader key.
    """
    return {
        "bootstrap": {
            "method": "pgbackrest",
            "pgbackrest": {
                "command": command,
                "keep_existing_recovery_conf": True,
                "no_params": True,
            },
        }
    }


def render(settings: PatroniSettings, extra_hba: Sequence[HbaRule] = ()) -> dict[str, Any]:
    """A whole patroni.yml for a cluster with nothing but PostgreSQL (the charm merges more)."""
    config = member_config(settings)
    config["bootstrap"]["dcs"] = dynamic_config(settings)
    config["postgresql"]["pg_hba"] = render_hba([*system_hba(), *extra_hba])
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
