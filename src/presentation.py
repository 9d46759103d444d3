"""How the charm presents the cluster to Juju: unit statuses, unit names, action parameters."""

from __future__ import annotations

import datetime
import logging

import ops

import backups
from charms.postgresql_k8s.v0 import postgresql as pglib
from config import CharmConfig
from relations.s3 import S3State
from state import PeerAppData
from workload import layout, patroni, scheduler

logger = logging.getLogger(__name__)

# A schedule is "missed" when no backup of its kind succeeded this long after it fired.
MISSED_GRACE = datetime.timedelta(minutes=30)


def system_user(event: ops.ActionEvent) -> layout.SystemUser | None:
    """The system user an action names (operator by default); fails the action if unknown."""
    name = str(event.params.get("username", layout.SystemUser.OPERATOR.value))
    try:
        return layout.SystemUser(name)
    except ValueError:
        names = ", ".join(u.value for u in layout.SystemUser)
        event.fail(f"unknown username {name!r}: use one of {names}")
        return None


def unit_name(member: str) -> str:
    """The Juju unit name of a Patroni member: `app-0` -> `app/0`."""
    app, _, number = member.rpartition("-")
    return f"{app}/{number}"


def member_status(member: patroni.Member) -> ops.StatusBase:
    """A unit's status from its Patroni member: active with its role, else why not."""
    suffix = ", restart pending" if member.pending_restart else ""
    if member.is_leader and member.state == "running":
        return ops.ActiveStatus(f"primary{suffix}")
    if member.state == "streaming":
        role = "sync standby" if member.is_sync_standby else "replica"
        return ops.ActiveStatus(f"{role}{suffix}")
    return ops.WaitingStatus(f"PostgreSQL {member.state.replace('_', ' ')}")


def restore_status(data: PeerAppData, *, unit: bool = False) -> ops.StatusBase | None:
    """What a restore in progress (or failed) tells the operator.

    An abandoned restore changed nothing: units show their member again, the app says why.
    """
    r = data.restore
    if r is None or (unit and r.phase == "abandoned"):
        return None
    if r.phase == "failed":
        return ops.BlockedStatus(f"restore {r.id} failed: {r.message}")
    if r.phase == "abandoned":
        return ops.BlockedStatus(f"restore {r.id} abandoned, nothing changed: {r.message}")
    phases = {
        "stopping": "stopping every member",
        "restoring": f"restoring on {r.restorer}",
        "replicas": "re-cloning the other members",
    }
    return ops.MaintenanceStatus(f"restore {r.id}: {phases.get(r.phase, r.phase)}")


def _missed(
    kind: str, schedule: str, data: PeerAppData, now: datetime.datetime
) -> ops.StatusBase | None:
    if not schedule:
        return None
    due = scheduler.last_due(schedule, now - MISSED_GRACE)
    last = data.backup_succeeded.get(kind)
    if last is not None and datetime.datetime.fromisoformat(last) >= due:
        return None
    first = data.backup_fired.get(kind)
    if first is None and last is None:
        return None  # never fired yet: the schedule was set after `due`
    return ops.BlockedStatus(f"scheduled {kind} backup of {due:%Y-%m-%d %H:%M}Z missed")


def backup_statuses(
    data: PeerAppData, s3: S3State, config: CharmConfig | None, now: datetime.datetime
) -> list[ops.StatusBase]:
    """Backup problems (blocked), a restore in progress, or the last backup (in active)."""
    statuses: list[ops.StatusBase] = []
    if (status := restore_status(data)) is not None:
        statuses.append(status)
    if s3.error:
        statuses.append(ops.BlockedStatus(s3.error))
    elif data.backup_error and s3.related:
        statuses.append(ops.BlockedStatus(data.backup_error))
    if config is not None and data.backup_stanza:
        for kind, schedule in (
            ("full", config.backup_schedule_full),
            ("incremental", config.backup_schedule_incremental),
        ):
            if (missed := _missed(kind, schedule, data, now)) is not None:
                statuses.append(missed)
    return statuses


def last_backup(data: PeerAppData) -> str:
    """`last backup <time>` for the active message, or empty."""
    if not data.backup_succeeded:
        return ""
    latest = max(datetime.datetime.fromisoformat(t) for t in data.backup_succeeded.values())
    return f"last backup {latest:%Y-%m-%d %H:%M}Z"


def backup_summary(data: PeerAppData, db: pglib.PostgreSQL | None) -> str:
    """`last backup <time>, archive lag <n> WAL files`, for the active message."""
    parts = [last_backup(data)]
    try:
        parts.append(backups.archive_lag(db) if db is not None else "")
    except pglib.PostgreSQLError as e:
        logger.info("archive lag unknown: %s", e)
    return ", ".join(p for p in parts if p)
