"""A Patroni cluster on substrate pods, configured only by the charm's own builders.

Each member gets what the charm would give its unit: WORKLOAD_DIRS, patroni.yml from
`workload.patroni.render`, the role-change script, and the Pebble service from
`workload.pebble.postgresql_layer`, whose Kubernetes DCS environment is translated to etcd.
Tier-2 tests and benchmarks run against it.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from substrate import dcs, netns, pods, processes, services
from workload import layout, patroni, pebble

APP = "postgresql-k8s"
NAMESPACE = "substrate"  # the Kubernetes namespace the charm would be given (translated away)


def installed_pg_major() -> int:
    """The newest PostgreSQL major installed in the Debian layout (the charm reads the image's)."""
    majors = [
        int(d.name)
        for d in Path(layout.PG_BASE_DIR).glob("*")
        if re.fullmatch(r"\d+", d.name) and (d / "bin" / "postgres").exists()
    ]
    if not majors:
        raise netns.SubstrateError(f"no PostgreSQL server under {layout.PG_BASE_DIR}/<major>/bin")
    return max(majors)


def missing_pieces() -> list[str]:
    """Everything this host lacks to run a Patroni cluster on pods; empty when ready."""
    missing = netns.missing_host_tools() + dcs.missing_tools()
    try:
        missing += services.missing_tools(installed_pg_major())
    except netns.SubstrateError as e:
        missing.append(str(e))
    return missing


def generate_passwords() -> dict[layout.SystemUser, str]:
    """A fresh random password for every system user."""
    return {user: secrets.token_urlsafe(24) for user in layout.SystemUser}


@dataclasses.dataclass
class PatroniMember:
    """One unit: its pod, the settings its patroni.yml was rendered from, its Patroni process."""

    unit: str
    pod: pods.Pod
    settings: patroni.PatroniSettings
    process: processes.PodProcess | None = None

    @property
    def name(self) -> str:
        """Patroni member name (= pod name)."""
        return self.settings.member

    @property
    def ip(self) -> str:
        """The pod's IP."""
        return self.pod.ip


class PatroniCluster:
    """`units` Patroni members of one scope, on their own pods, sharing one etcd."""

    def __init__(
        self,
        substrate: pods.Substrate,
        etcd: dcs.Etcd,
        *,
        units: int = 3,
        app: str = APP,
        parameters: Mapping[str, str] | None = None,
        synchronous_node_count: int = 1,
        synchronous_mode_strict: bool = False,
    ):
        self.substrate = substrate
        self.etcd = etcd
        self.app = app
        self.pg_major = installed_pg_major()
        self.passwords = generate_passwords()
        self.members: dict[str, PatroniMember] = {}
        for n in range(units):
            unit = f"{app}/{n}"
            settings = patroni.PatroniSettings(
                scope=app,
                member=layout.member_name(unit),
                connect_host=layout.unit_fqdn(unit, app),
                pg_major=self.pg_major,
                passwords=self.passwords,
                parameters=dict(parameters or {}),
                synchronous_node_count=synchronous_node_count,
                synchronous_mode_strict=synchronous_mode_strict,
            )
            pod = substrate.add_pod(settings.member, hostnames=[settings.connect_host])
            self.members[settings.member] = PatroniMember(unit, pod, settings)

    @property
    def names(self) -> list[str]:
        """Member names, in unit order."""
        return list(self.members)

    @property
    def ips(self) -> dict[str, str]:
        """Each member's pod IP."""
        return {name: m.ip for name, m in self.members.items()}

    def dynamic_config(self) -> dict[str, Any]:
        """The DCS configuration the charm bootstraps (the same for every member)."""
        return patroni.dynamic_config(next(iter(self.members.values())).settings)

    def prepare(self, name: str) -> None:
        """Write what the charm writes into the unit's container before starting Patroni."""
        member = self.members[name]
        pod, owner, group = member.pod, layout.WORKLOAD_USER, layout.WORKLOAD_GROUP
        for directory in layout.WORKLOAD_DIRS:
            pod.make_dir(directory, mode=0o700, owner=owner, group=group)
        config = patroni.dump(patroni.render(member.settings))
        pod.write_file(layout.PATRONI_CONF, config, mode=0o600, owner=owner, group=group)
        script = patroni.role_change_script()
        pod.write_file(layout.ROLE_CHANGE_SCRIPT, script, mode=0o755, owner=owner, group=group)
        services.install_fake_pebble(pod)

    def start(self, name: str) -> None:
        """Start the member's Patroni from the charm's Pebble service definition."""
        member = self.members[name]
        environment = patroni.dcs_environment(self.app, NAMESPACE, member.ip)
        layer = pebble.postgresql_layer(environment, metrics_enabled=False)
        service = layer.get("services", {})[layout.SERVICE_POSTGRESQL]
        member.process = services.start_service(
            member.pod, layout.SERVICE_POSTGRESQL, service, self.etcd.url, self.pg_major
        )

    def start_all(self) -> None:
        """Prepare and start every member."""
        for name in self.members:
            self.prepare(name)
            self.start(name)

    def client(self, name: str, timeout: float = 5.0) -> patroni.PatroniClient:
        """A REST client for the member, authenticated as the `patroni` user."""
        auth = (layout.SystemUser.PATRONI.value, self.passwords[layout.SystemUser.PATRONI])
        url = f"http://{self.members[name].ip}:{layout.PORT_PATRONI}"
        return patroni.PatroniClient(url, auth=auth, timeout=timeout)

    def status(self) -> patroni.ClusterStatus:
        """/cluster from the first member that answers."""
        error: patroni.PatroniError | None = None
        for name in self.members:
            try:
                return self.client(name, timeout=2.0).cluster()
            except patroni.PatroniError as e:
                error = e
        raise patroni.PatroniUnreachableError(f"no member answers /cluster: {error}")

    def wait_for(
        self, predicate: Callable[[patroni.ClusterStatus], bool], timeout: float = 60.0
    ) -> patroni.ClusterStatus:
        """Poll /cluster until predicate(status) holds; PatroniError at the deadline."""
        deadline = time.monotonic() + timeout
        last: patroni.ClusterStatus | None = None
        while True:
            try:
                last = self.status()
                if predicate(last):
                    return last
            except patroni.PatroniError:
                pass
            if time.monotonic() > deadline:
                raise patroni.PatroniError(
                    f"cluster not in the expected state after {timeout}s: {last}"
                )
            time.sleep(0.5)

    def is_settled(self, status: patroni.ClusterStatus) -> bool:
        """Every member in, a leader running, the others streaming, the sync standbys chosen."""
        members = list(self.members.values())
        wanted_sync = min(members[0].settings.synchronous_node_count, len(members) - 1)
        return (
            status.healthy
            and len(status.members) == len(members)
            and len(status.sync_standbys) == wanted_sync
        )

    def wait_settled(self, timeout: float = 120.0) -> patroni.ClusterStatus:
        """Wait until is_settled()."""
        return self.wait_for(self.is_settled, timeout)

    def primary(self) -> str:
        """Name of the member holding the leader lock."""
        leader = self.status().leader
        if leader is None:
            raise patroni.PatroniError("the cluster has no leader")
        return leader.name

    def primary_ip(self) -> str:
        """IP of the primary."""
        return self.members[self.primary()].ip

    def connect(
        self,
        name: str,
        user: str = layout.SystemUser.OPERATOR.value,
        password: str | None = None,
        dbname: str = "postgres",
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection over TCP to the member (operator's password by default)."""
        if password is None:
            password = self.passwords[layout.SystemUser.OPERATOR]
        return psycopg.connect(
            host=self.members[name].ip,
            port=layout.PORT_POSTGRESQL,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=5,
            autocommit=True,
        )

    def postgresql_logs(self, name: str) -> str:
        """Every PostgreSQL log file of the member, concatenated in name order."""
        log_dir = self.members[name].pod.host_path(layout.PG_LOG_DIR)
        return "".join(
            p.read_text(errors="replace") for p in sorted(log_dir.glob("*")) if p.is_file()
        )

    def patroni_output(self, name: str) -> str:
        """What the member's Patroni wrote to stdout and stderr."""
        path = services.service_log(self.members[name].pod, layout.SERVICE_POSTGRESQL)
        return path.read_text(errors="replace") if path.exists() else ""

    def notices(self, name: str) -> list[services.Notice]:
        """Pebble notices the member raised (role changes)."""
        return services.notices(self.members[name].pod)

    def diagnostics(self, lines: int = 15) -> str:
        """The last lines of every member's Patroni output, for a failure message."""
        parts: list[str] = []
        for name in self.members:
            tail = self.patroni_output(name).splitlines()[-lines:]
            parts.append(f"--- {name} Patroni output ---\n" + "\n".join(tail))
        return "\n".join(parts)
