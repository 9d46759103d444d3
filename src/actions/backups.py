"""The backup actions (create-backup, list-backups, restore) and the backups a schedule asks for."""

from __future__ import annotations

import datetime
import logging
import secrets

import ops

from actions.params import BackupParams, RestoreParams, parse
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import Io, backups
from peer_data import RestoreState
from state import Snapshot
from workload import pgbackrest, scheduler

logger = logging.getLogger(__name__)

_KINDS: dict[str, pgbackrest.BackupType] = {"full": "full", "differential": "diff"}
_KINDS["incremental"] = "incr"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 time; without a zone it is UTC. ValueError says what is expected."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"restore-to-time {text!r} is not a time: use ISO 8601, e.g. 2026-11-26T10:15:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def _ready_error(s: Snapshot, restoring: bool = False) -> str | None:
    """Why backups (or, with `restoring`, a new restore) cannot run now; None if they can."""
    r = s.peer_data.restore
    if r is not None and r.phase == "failed" and not restoring:
        return f"the last restore failed ({r.message}): run restore again"
    if not s.s3.related:
        return "no S3 repository: integrate with an s3-parameters provider first"
    if s.s3.error:
        return s.s3.error
    if r is not None and r.phase not in ("failed", "abandoned"):
        return "a restore is in progress"
    if not backups.archiving(s):
        return s.peer_data.backup_error or "the S3 repository is not ready yet"
    return None


def _backup(s: Snapshot, io: Io, kind: str, requested_by: str) -> pgbackrest.Backup:
    """Take a backup of `kind` (full, differential, incremental) from a standby if any."""
    standby = s.cluster is not None and any(
        m.is_healthy and not m.is_leader for m in s.cluster.members
    )
    return backups.take_backup(io.container, s, _KINDS[kind], standby, requested_by)


def _record(s: Snapshot, io: Io, field: str, kind: str, at: str) -> Snapshot:
    """Leader: remember when a backup of a kind succeeded, or a schedule fired (for status)."""
    if not s.is_leader:
        return s
    current: dict[str, str] = getattr(s.peer_data, field)
    return io.peers.save(s, {field: {**current, kind: at}})


def create_backup(event: ops.ActionEvent, s: Snapshot, io: Io) -> None:
    """Take a backup now."""
    params = parse(event, BackupParams)
    if params is None:
        return
    error = _ready_error(s)
    if error:
        event.fail(error)
        return
    kind = params.type
    event.log(f"taking a {kind} backup")
    try:
        taken = _backup(s, io, kind, f"action on {s.unit_name}")
    except backups.BackupError as e:
        event.fail(f"backup failed: {e}")
        return
    _record(s, io, "backup_succeeded", kind, taken.stop.isoformat())
    event.set_results(
        {
            "backup-id": taken.label,
            "type": taken.type,
            "size": str(taken.size),
            "stop": taken.stop.isoformat(),
        }
    )


def list_backups(event: ops.ActionEvent, s: Snapshot, io: Io) -> None:
    """The repository's backups as a table."""
    if s.s3.settings is None or not backups.archiving(s):
        event.fail(_ready_error(s) or "the S3 repository is not ready")
        return
    try:
        stanza = backups.info(io.container, s)
    except backups.BackupError as e:
        event.fail(f"cannot list backups: {e}")
        return
    listed: list[pgbackrest.Backup] = list(stanza.backups) if stanza else []
    event.set_results({"backups": pgbackrest.format_table(listed), "count": str(len(listed))})


def restore_target(
    params: dict[str, object],
    stanza: pgbackrest.StanzaInfo,
    reach: datetime.datetime | None = None,
) -> dict[str, str]:
    """The restore the action asks for, checked against the repository; ValueError if bad.

    `reach`: when the last WAL the repository holds was archived, if known. A point in time
    after it cannot be reached: recovery would end short of it, after hours of replay.
    """
    backup_id = str(params.get("backup-id") or "")
    to_time = str(params.get("restore-to-time") or "")
    latest = bool(params.get("latest", False))
    if sum(map(bool, (backup_id, to_time, latest))) != 1:
        raise ValueError("give exactly one of backup-id, restore-to-time or latest=true")
    if not stanza.backups:
        raise ValueError("the repository holds no backup to restore")
    if backup_id:
        if backup_id not in {b.label for b in stanza.backups}:
            raise ValueError(f"no backup {backup_id!r}: run list-backups")
        return {"backup-id": backup_id}
    if latest:
        return {}
    moment = parse_time(to_time)
    earliest = min(b.stop for b in stanza.backups)
    if moment < earliest or moment > _utc_now():
        raise ValueError(
            f"restore-to-time must be between the first backup's end ({earliest.isoformat()})"
            " and now"
        )
    if reach is not None and moment > reach:
        raise ValueError(
            f"restore-to-time is after the last WAL the repository holds (archived"
            f" {reach.isoformat()}): pick an earlier time, or wait for archiving to catch up"
        )
    return {"target-time": moment.isoformat()}


def _reach(s: Snapshot, io: Io) -> datetime.datetime | None:
    """When the primary last archived a WAL file, if it can tell."""
    db = io.primary_db(s)
    try:
        return db.get_archiver_status().last_archived_time if db is not None else None
    except pglib.PostgreSQLError as e:
        logger.info("cannot tell how far the archive reaches: %s", e)
        return None


def _restore_request(event: ops.ActionEvent, s: Snapshot, io: Io) -> RestoreState | None:
    """The restore the action asks for, checked; None after failing the action saying why."""
    params = parse(event, RestoreParams)
    error = _ready_error(s, restoring=True) if params is not None else None
    if params is None or error:
        if error:
            event.fail(error)
        return None
    try:
        stanza = backups.info(io.container, s)
    except backups.BackupError as e:
        event.fail(f"cannot read the repository: {e}")
        return None
    if stanza is None:
        event.fail("the repository has no stanza for this cluster")
        return None
    try:
        target = restore_target(params.model_dump(by_alias=True), stanza, _reach(s, io))
    except ValueError as e:
        event.fail(str(e))
        return None
    return RestoreState.model_validate(
        {"id": secrets.token_hex(4), "started": _utc_now().isoformat(), **target}
    )


def restore(event: ops.ActionEvent, s: Snapshot, io: Io) -> Snapshot | None:
    """Leader: start a restore across the application; the snapshot to reconcile."""
    if not s.is_leader:
        event.fail("restore must run on the leader unit")
        return None
    request = _restore_request(event, s, io)
    if request is None:
        return None
    event.set_results(
        {"restore-id": request.id, "message": "restore started: follow `juju status`"}
    )
    return io.peers.save(s, {"restore": request})


def scheduled_backup(event: ops.PebbleCustomNoticeEvent, s: Snapshot, io: Io) -> Snapshot | None:
    """Leader: the scheduler says a backup is due; take it, or say why not in the log."""
    if event.notice.key != scheduler.NOTICE or not s.is_leader:
        return None
    try:
        kind, at = scheduler.parse_notice(event.notice.last_data)
    except ValueError as e:
        logger.warning("ignoring a malformed schedule notice: %s", e)
        return None
    s = _record(s, io, "backup_fired", kind, at.isoformat())
    if error := _ready_error(s):
        logger.warning("scheduled %s backup skipped: %s", kind, error)
        return s
    incremental = (
        "differential"
        if s.config and s.config.backup_incremental_type == "diff"
        else "incremental"
    )
    try:
        taken = _backup(s, io, "full" if kind == "full" else incremental, "schedule")
    except backups.BackupError as e:
        logger.warning("scheduled %s backup failed: %s", kind, e)
        return s
    return _record(s, io, "backup_succeeded", kind, taken.stop.isoformat())
