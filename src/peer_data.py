"""The peer relation's contents as typed models, read once per hook.

The application databag is flat (one key per fact, JSON values) so that every released revision
reads what any other wrote; each component owns a model of its own keys, and `PeerAppData` is
their union. Only `peers.PeerWriter` writes them.
"""

from __future__ import annotations

import logging

import ops
import pydantic

logger = logging.getLogger(__name__)

RELATION = "database-peers"
_MODEL_CONFIG = pydantic.ConfigDict(populate_by_name=True, extra="ignore")


class UsersData(pydantic.BaseModel):
    """System users: where their passwords live, and a bump when the leader rotates one."""

    model_config = _MODEL_CONFIG

    system_users_secret: str | None = pydantic.Field(default=None, alias="system-users-secret")
    # Units of the owning application get no secret-changed event: they re-read on a bump.
    users_revision: int = pydantic.Field(default=0, alias="users-revision")


class ClientsData(pydantic.BaseModel):
    """Client access the leader granted, and extensions it enabled."""

    model_config = _MODEL_CONFIG

    # (database, user) pairs every unit writes into pg_hba; the users every running member was
    # seen to admit (only those are published); why requests could not be served, by relation.
    client_rules: list[tuple[str, str]] = pydantic.Field(default=[], alias="client-rules")
    client_admitted: list[str] = pydantic.Field(default=[], alias="client-admitted")
    client_problems: dict[str, str] = pydantic.Field(default={}, alias="client-problems")
    # Digests of what was granted to each user and answered to each request: nothing unchanged
    # is applied or written again.
    client_granted: dict[str, str] = pydantic.Field(default={}, alias="client-granted")
    client_published: dict[str, str] = pydantic.Field(default={}, alias="client-published")
    # Each client database's owning application, and the users holding elevated privileges
    # (taken back, sessions ended, once no longer allowed).
    client_databases: dict[str, str] = pydantic.Field(default={}, alias="client-databases")
    client_elevated: list[str] = pydantic.Field(default=[], alias="client-elevated")
    extensions_applied: list[str] = pydantic.Field(default=[], alias="extensions-applied")
    extensions_error: str = pydantic.Field(default="", alias="extensions-error")


class RestoreState(pydantic.BaseModel):
    """A restore in progress: what to restore, who restores it, and how far it got."""

    model_config = _MODEL_CONFIG

    id: str
    backup_id: str | None = pydantic.Field(default=None, alias="backup-id")
    target_time: str | None = pydantic.Field(default=None, alias="target-time")
    # stopping -> restoring -> replicas; "failed" keeps the cluster stopped with a message;
    # "abandoned" (a unit did not stop in time) changed nothing and lets every member run.
    phase: str = "stopping"
    restorer: str = ""
    started: str = ""
    message: str = ""


class BackupsData(pydantic.BaseModel):
    """The repository in use, the restore in progress, and when backups last happened."""

    model_config = _MODEL_CONFIG

    # The settings digest the stanza was created for: archiving is on while it matches.
    backup_stanza: str = pydantic.Field(default="", alias="backup-stanza")
    backup_tls_secret: str = pydantic.Field(default="", alias="backup-tls-secret")
    backup_error: str = pydantic.Field(default="", alias="backup-error")
    restore: RestoreState | None = pydantic.Field(default=None, alias="restore")
    # kind -> ISO time (UTC) of the last success, and of the last time a schedule fired.
    backup_succeeded: dict[str, str] = pydantic.Field(default={}, alias="backup-succeeded")
    backup_fired: dict[str, str] = pydantic.Field(default={}, alias="backup-fired")


class PeerAppData(UsersData, ClientsData, BackupsData):
    """Application facts shared through the peer relation (written by the leader only)."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


def load(relation: ops.Relation | None, app: ops.Application) -> PeerAppData:
    """The application databag; a value that cannot be parsed is treated as absent."""
    if relation is None:
        return PeerAppData()
    try:
        return relation.load(PeerAppData, app)
    except (pydantic.ValidationError, ValueError) as e:
        logger.warning("ignoring unreadable peer data: %s", e)
        return PeerAppData()


def unit_databags(relation: ops.Relation | None, unit: ops.Unit) -> dict[str, dict[str, str]]:
    """Every unit's databag (this one's included), by unit name, as plain dicts."""
    if relation is None:
        return {unit.name: {}}
    bags = {u.name: dict(relation.data[u]) for u in relation.units}
    bags[unit.name] = dict(relation.data[unit])
    return bags
