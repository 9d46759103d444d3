"""One typed snapshot of everything a hook reads from Juju: config, peers, secrets and the unit."""

from __future__ import annotations

import dataclasses
import logging

import ops
import pydantic

import config
import system_users
from workload import layout

logger = logging.getLogger(__name__)

PEER = "database-peers"


class RestoreState(pydantic.BaseModel):
    """A restore in progress: what to restore, who restores it, and how far it got."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    backup_id: str | None = pydantic.Field(default=None, alias="backup-id")
    target_time: str | None = pydantic.Field(default=None, alias="target-time")
    # stopping -> restoring -> replicas; "failed" keeps the cluster stopped with a message;
    # "abandoned" (a unit did not stop in time) changed nothing and lets every member run.
    phase: str = "stopping"
    restorer: str = ""
    started: str = ""
    message: str = ""


class PeerAppData(pydantic.BaseModel):
    """Application facts shared through the peer relation (written by the leader only)."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore")

    system_users_secret: str | None = pydantic.Field(default=None, alias="system-users-secret")
    # Bumped by the leader when it rotates a password, so every unit re-reads the secret
    # (units of the owning application get no secret-changed event).
    users_revision: int = pydantic.Field(default=0, alias="users-revision")
    # Client access the leader granted: (database, user) pairs every unit writes into pg_hba,
    # the users every running member was seen to admit (only those are published), and why
    # requests could not be served, by relation id.
    client_rules: list[tuple[str, str]] = pydantic.Field(default=[], alias="client-rules")
    client_admitted: list[str] = pydantic.Field(default=[], alias="client-admitted")
    client_problems: dict[str, str] = pydantic.Field(default={}, alias="client-problems")
    # Digests of what was granted to each client user and answered to each request, so that
    # nothing unchanged is applied or written again.
    client_granted: dict[str, str] = pydantic.Field(default={}, alias="client-granted")
    client_published: dict[str, str] = pydantic.Field(default={}, alias="client-published")
    # Backups: the settings digest the stanza was created for (archiving is on while it matches
    # the relation's), why the repository cannot be used, the restore in progress, and when the
    # last backups succeeded or a schedule fired (kind -> ISO time, UTC).
    backup_stanza: str = pydantic.Field(default="", alias="backup-stanza")
    backup_tls_secret: str = pydantic.Field(default="", alias="backup-tls-secret")
    backup_error: str = pydantic.Field(default="", alias="backup-error")
    restore: RestoreState | None = pydantic.Field(default=None, alias="restore")
    backup_succeeded: dict[str, str] = pydantic.Field(default={}, alias="backup-succeeded")
    backup_fired: dict[str, str] = pydantic.Field(default={}, alias="backup-fired")
    # Extensions the leader enabled in every database, and why the last change failed.
    extensions_applied: list[str] = pydantic.Field(default=[], alias="extensions-applied")
    extensions_error: str = pydantic.Field(default="", alias="extensions-error")


@dataclasses.dataclass(frozen=True)
class State:
    """What this hook knows about the unit, the application and its config."""

    unit_name: str
    app_name: str
    namespace: str
    is_leader: bool
    planned_units: int
    pod_ip: str | None
    config: config.CharmConfig | None
    config_error: config.InvalidConfigError | None
    peers: ops.Relation | None
    peer_data: PeerAppData
    passwords: dict[layout.SystemUser, str] | None
    peer_unit_data: dict[str, str] = dataclasses.field(default_factory=dict[str, str])

    @property
    def departing(self) -> bool:
        """Whether this unit is being removed (Kubernetes removes the highest ordinals)."""
        return int(self.unit_name.rsplit("/", 1)[1]) >= self.planned_units

    @property
    def member(self) -> str:
        """This unit's Patroni member name (its pod name)."""
        return layout.member_name(self.unit_name)

    @property
    def peer_members(self) -> tuple[str, ...]:
        """Member names of every unit in the peer relation, this one included."""
        units = {self.unit_name}
        if self.peers is not None:
            units |= {u.name for u in self.peers.units}
        return tuple(sorted(layout.member_name(u) for u in units))


def _pod_ip(model: ops.Model) -> str | None:
    try:
        binding = model.get_binding(PEER)
        return str(binding.network.bind_address) if binding.network.bind_address else None
    except ops.ModelError:
        return None


def _peer_data(relation: ops.Relation | None, app: ops.Application) -> PeerAppData:
    if relation is None:
        return PeerAppData()
    try:
        return relation.load(PeerAppData, app)
    except (pydantic.ValidationError, ValueError) as e:
        # Only the leader writes this databag; a value we cannot parse is treated as absent.
        logger.warning("ignoring unreadable peer data: %s", e)
        return PeerAppData()


def collect(charm: ops.CharmBase) -> State:
    """Read the snapshot once per hook; later steps never re-read Juju."""
    model = charm.model
    try:
        cfg, error = config.load_config(dict(model.config)), None
    except config.InvalidConfigError as e:
        cfg, error = None, e
    peers = model.get_relation(PEER)
    peer_data = _peer_data(peers, model.app)
    is_leader = model.unit.is_leader()
    return State(
        unit_name=model.unit.name,
        app_name=model.app.name,
        namespace=model.name,
        is_leader=is_leader,
        planned_units=model.app.planned_units(),
        pod_ip=_pod_ip(model),
        config=cfg,
        config_error=error,
        peers=peers,
        peer_data=peer_data,
        passwords=system_users.read(model, peer_data.system_users_secret),
        peer_unit_data=dict(peers.data[model.unit]) if peers is not None else {},
    )
