"""One immutable snapshot of everything a hook reads: Juju, the container, Kubernetes and Patroni."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import ops

import config
import config_options
import k8s
import peer_data
from relations import database
from relations import s3 as s3_relation
from workload import guc, internal_tls, layout, patroni, system

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ContainerFacts:
    """What the workload container says about itself; None fields are unknown."""

    can_connect: bool
    pg_major: int | None = None
    memory_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class ClientRequests:
    """The `database` relations as the leader reads them (empty on other units)."""

    requests: tuple[database.ClientRequest, ...] = ()
    problems: tuple[database.RelationProblem, ...] = ()
    relation_ids: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True)
class Ready:
    """The facts without which nothing can be configured, all known."""

    config: config.CharmConfig
    passwords: Mapping[layout.SystemUser, str]
    pod_ip: str
    pg_major: int
    memory_bytes: int | None
    # The cluster-wide PostgreSQL parameters the config gives for this memory (computed once,
    # where the config is checked).
    parameters: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What this hook knows; read once, replaced (never mutated) by the writes the hook makes."""

    unit_name: str
    app_name: str
    namespace: str
    is_leader: bool
    planned_units: int
    pod_ip: str | None
    config: config.CharmConfig | None
    config_error: config.InvalidConfigError | None
    parameters: Mapping[str, str]
    peers_related: bool
    peer_data: peer_data.PeerAppData
    # Every unit's peer databag (this unit's included), by unit name.
    unit_data: Mapping[str, Mapping[str, str]]
    # The system users' secret content, or None while it does not exist or cannot be read.
    users_secret: Mapping[str, str] | None
    s3: s3_relation.S3State
    backup_tls: internal_tls.InternalTls | None
    container: ContainerFacts
    missing_permissions: tuple[str, ...]
    cluster: patroni.ClusterStatus | None
    clients: ClientRequests
    # Set by the backups component's leader step, for the application status.
    archive_summary: str = ""
    # Set when applying the goal met a directory that is a symbolic link (nothing written).
    unsafe_path: str = ""

    @property
    def passwords(self) -> dict[layout.SystemUser, str] | None:
        """Every system user's password, or None while any is missing."""
        if self.users_secret is None:
            return None
        return passwords_from_content(self.users_secret)

    @property
    def member(self) -> str:
        """This unit's Patroni member name (its pod name)."""
        return layout.member_name(self.unit_name)

    @property
    def departing(self) -> bool:
        """Whether this unit is being removed (Kubernetes removes the highest ordinals)."""
        return int(self.unit_name.rsplit("/", 1)[1]) >= self.planned_units

    @property
    def peer_members(self) -> tuple[str, ...]:
        """Member names of every unit in the peer relation, this one included."""
        return tuple(sorted(layout.member_name(u) for u in self.unit_data))

    @property
    def own_data(self) -> Mapping[str, str]:
        """This unit's peer databag."""
        return self.unit_data.get(self.unit_name, {})

    def not_acked(self, key: str, value: str) -> list[str]:
        """Units (this one included) whose databag does not hold `key: value`, sorted."""
        if not self.peers_related:
            return [self.unit_name]
        return sorted(u for u, bag in self.unit_data.items() if bag.get(key) != value)

    @property
    def ready(self) -> Ready | None:
        """The facts configuration needs, or None while one is missing or invalid."""
        passwords = self.passwords
        if (
            self.config is None
            or self.config_error is not None
            or passwords is None
            or self.pod_ip is None
            or not self.container.can_connect
            or self.container.pg_major is None
            or self.missing_permissions
        ):
            return None
        return Ready(
            self.config,
            passwords,
            self.pod_ip,
            self.container.pg_major,
            self.container.memory_bytes,
            self.parameters,
        )


def passwords_from_content(content: Mapping[str, str]) -> dict[layout.SystemUser, str] | None:
    """The passwords in the system users' secret, or None if any user's is missing."""
    out: dict[layout.SystemUser, str] = {}
    for user in layout.SystemUser:
        value = content.get(user.secret_key)
        if not value:
            return None
        out[user] = value
    return out


# -- reading ---------------------------------------------------------------------------------

USERS_SECRET_LABEL = "system-users"  # noqa: S105 (a label, not a password)


def _pod_ip(model: ops.Model) -> str | None:
    try:
        binding = model.get_binding(peer_data.RELATION)
        return str(binding.network.bind_address) if binding.network.bind_address else None
    except ops.ModelError:
        return None


def _secret_content(model: ops.Model, secret_id: str | None, label: str) -> dict[str, str] | None:
    try:
        secret = model.get_secret(id=secret_id) if secret_id else model.get_secret(label=label)
        return secret.get_content(refresh=True)
    except (ops.SecretNotFoundError, ops.ModelError):
        return None


def _backup_tls(model: ops.Model, secret_id: str) -> internal_tls.InternalTls | None:
    content = _secret_content(model, secret_id, "") if secret_id else None
    if content is None or not {"ca-cert", "cert", "key"} <= content.keys():
        return None
    return internal_tls.InternalTls(
        ca=content["ca-cert"], cert=content["cert"], key=content["key"]
    )


def _read_file(container: ops.Container, path: str) -> str | None:
    try:
        with container.pull(path) as f:
            return f.read()
    except (ops.pebble.PathError, ops.pebble.APIError):
        return None


def _container_facts(container: ops.Container) -> ContainerFacts:
    if not container.can_connect():
        return ContainerFacts(can_connect=False)
    try:
        entries = [f.name for f in container.list_files(layout.PG_BASE_DIR)]
    except (ops.pebble.APIError, ops.pebble.ConnectionError):
        entries = []
    memory = system.memory_limit_bytes(
        _read_file(container, "/sys/fs/cgroup/memory.max"), _read_file(container, "/proc/meminfo")
    )
    return ContainerFacts(True, system.newest_major(entries), memory)


def _missing_permissions(kubernetes: k8s.Kubernetes) -> tuple[str, ...]:
    try:
        return tuple(kubernetes.missing_permissions())
    except k8s.KubernetesError as e:
        logger.warning("RBAC probe failed: %s", e)
        return ()


def patroni_client(
    pod_ip: str, passwords: Mapping[layout.SystemUser, str]
) -> patroni.PatroniClient:
    """Patroni REST client of the member at `pod_ip`."""
    auth = (layout.SystemUser.PATRONI.value, passwords[layout.SystemUser.PATRONI])
    return patroni.PatroniClient(f"http://{pod_ip}:{layout.PORT_PATRONI}", auth)


def _cluster(
    pod_ip: str | None, passwords: Mapping[layout.SystemUser, str] | None
) -> patroni.ClusterStatus | None:
    if pod_ip is None or passwords is None:
        return None
    try:
        return patroni_client(pod_ip, passwords).cluster()
    except patroni.PatroniError as e:
        logger.info("Patroni not reachable: %s", e)
        return None


def _client_requests(model: ops.Model, is_leader: bool) -> ClientRequests:
    if not is_leader:
        return ClientRequests()
    requests, problems = database.read_requests(model)
    ids = frozenset(r.id for r in model.relations[database.RELATION])
    return ClientRequests(tuple(requests), tuple(problems), ids)


# Options whose valid values the image decides (its tzdata, locales, stack limit, major).
_IMAGE_OPTIONS = frozenset(
    {
        "request-time-zone",
        "memory-max-stack-depth",
        *(f"response-lc-{c}" for c in ("messages", "monetary", "numeric", "time")),
        *config_options.INTRODUCED_IN,
    }
)


def _exec_lines(container: ops.Container, argv: list[str]) -> list[str]:
    process = container.exec(
        argv, user=layout.WORKLOAD_USER, group=layout.WORKLOAD_GROUP, timeout=60
    )
    out, _ = process.wait_output()
    return out.splitlines()


def _image_facts(container: ops.Container, major: int) -> guc.ImageFacts | None:
    """What the workload image accepts, read in its container; None if it cannot be read."""
    try:
        zones = _exec_lines(
            container, ["find", "-L", "/usr/share/zoneinfo", "-type", "f", "-printf", "%P\\n"]
        )
        locales = _exec_lines(container, ["locale", "-a"])
        stack = _exec_lines(container, ["sh", "-c", "ulimit -s"])
    except ops.pebble.Error as e:  # ExecError included
        logger.warning("cannot read what the image accepts: %s", type(e).__name__)
        return None
    limit = stack[0].strip() if stack else ""
    return guc.ImageFacts(
        time_zones=guc.zone_names(zones),
        locales=guc.locale_names(locales),
        stack_limit_kb=int(limit) if limit.isdigit() else None,
        major=major,
    )


def _config(
    model: ops.Model, container: ops.Container, facts: ContainerFacts
) -> tuple[config.CharmConfig | None, config.InvalidConfigError | None, dict[str, str]]:
    """The config, checked against the container's memory and, where it decides, its image.

    Also the PostgreSQL parameters it gives (empty while it is invalid).

    The image is asked only when an option it decides is set: an idle hook runs no command.
    """
    try:
        cfg = config.load_config(dict(model.config))
        parameters = config.postgresql_parameters(cfg, facts.memory_bytes)
        if facts.pg_major is not None and _IMAGE_OPTIONS & set(cfg.parameter_options()):
            image = _image_facts(container, facts.pg_major)
            if image is not None:
                config.check_image(cfg, image)
    except config.InvalidConfigError as e:
        return None, e, {}
    return cfg, None, parameters


def read(
    model: ops.Model,
    container: ops.Container,
    kubernetes: k8s.Kubernetes,
    s3_state: s3_relation.S3State,
) -> Snapshot:
    """Read the snapshot once per hook; later steps never re-read what it holds."""
    relation = model.get_relation(peer_data.RELATION)
    app_data = peer_data.load(relation, model.app)
    facts = _container_facts(container)
    cfg, error, parameters = _config(model, container, facts)
    pod_ip = _pod_ip(model)
    users = _secret_content(model, app_data.system_users_secret, USERS_SECRET_LABEL)
    is_leader = model.unit.is_leader()
    return Snapshot(
        unit_name=model.unit.name,
        app_name=model.app.name,
        namespace=model.name,
        is_leader=is_leader,
        planned_units=model.app.planned_units(),
        pod_ip=pod_ip,
        config=cfg,
        config_error=error,
        parameters=parameters,
        peers_related=relation is not None,
        peer_data=app_data,
        unit_data=peer_data.unit_databags(relation, model.unit),
        users_secret=users,
        s3=s3_state,
        backup_tls=_backup_tls(model, app_data.backup_tls_secret),
        container=facts,
        missing_permissions=_missing_permissions(kubernetes),
        cluster=_cluster(pod_ip, passwords_from_content(users) if users else None),
        clients=_client_requests(model, is_leader),
    )
