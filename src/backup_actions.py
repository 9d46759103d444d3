"""The backup actions (create-backup, list-backups, restore) and scheduled backups."""

from __future__ import annotations

import datetime
import logging
import secrets
from typing import TYPE_CHECKING

import ops

import backups
from state import RestoreState
from workload import pgbackrest, scheduler

if TYPE_CHECKING:
    from charm import PostgresqlK8sCharm

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


class BackupActions(ops.Object):
    """Actions and the scheduler's notices; everything else is the charm's reconcile."""

    def __init__(self, charm: PostgresqlK8sCharm):
        super().__init__(charm, "backups")
        self.charm = charm
        on = charm.on
        self.framework.observe(on.create_backup_action, self._on_create_backup)
        self.framework.observe(on.list_backups_action, self._on_list_backups)
        self.framework.observe(on.restore_action, self._on_restore)
        self.framework.observe(on.postgresql_pebble_custom_notice, self._on_notice)

    def _ready_error(self, restoring: bool = False) -> str | None:
        """Why backups (or, with `restoring`, a new restore) cannot run now; None if they can."""
        st, s3 = self.charm.state, self.charm.s3_state
        r = st.peer_data.restore
        if r is not None and r.phase == "failed" and not restoring:
            return f"the last restore failed ({r.message}): run restore again"
        if not s3.related:
            return "no S3 repository: integrate with an s3-parameters provider first"
        if s3.error:
            return s3.error
        if r is not None and r.phase not in ("failed", "abandoned"):
            return "a restore is in progress"
        if not backups.archiving(st, s3):
            return st.peer_data.backup_error or "the S3 repository is not ready yet"
        return None

    def backup(self, kind: str, requested_by: str) -> pgbackrest.Backup:
        """Take a backup of `kind` (full, differential, incremental) from a standby if any."""
        status = self.charm.cluster_status
        standby = status is not None and any(
            m.is_healthy and not m.is_leader for m in status.members
        )
        return backups.take_backup(
            self.charm.container, self.charm.state, _KINDS[kind], standby, requested_by
        )

    def _on_create_backup(self, event: ops.ActionEvent) -> None:
        error = self._ready_error()
        if error:
            event.fail(error)
            return
        kind = str(event.params.get("type", "full"))
        event.log(f"taking a {kind} backup")
        try:
            taken = self.backup(kind, f"action on {self.charm.unit.name}")
        except backups.BackupError as e:
            event.fail(f"backup failed: {e}")
            return
        self.charm.record_backup(kind, taken)
        event.set_results(
            {
                "backup-id": taken.label,
                "type": taken.type,
                "size": str(taken.size),
                "stop": taken.stop.isoformat(),
            }
        )

    def _on_list_backups(self, event: ops.ActionEvent) -> None:
        s3 = self.charm.s3_state
        if s3.settings is None or not backups.archiving(self.charm.state, s3):
            event.fail(self._ready_error() or "the S3 repository is not ready")
            return
        try:
            stanza = backups.info(self.charm.container, self.charm.state)
        except backups.BackupError as e:
            event.fail(f"cannot list backups: {e}")
            return
        listed: list[pgbackrest.Backup] = list(stanza.backups) if stanza else []
        event.set_results({"backups": pgbackrest.format_table(listed), "count": str(len(listed))})

    @staticmethod
    def restore_target(params: dict[str, object], stanza: pgbackrest.StanzaInfo) -> dict[str, str]:
        """The restore the action asks for, checked against the repository; ValueError if bad."""
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
        return {"target-time": moment.isoformat()}

    def _on_restore(self, event: ops.ActionEvent) -> None:
        if not self.charm.unit.is_leader():
            event.fail("restore must run on the leader unit")
            return
        error = self._ready_error(restoring=True)
        if error:
            event.fail(error)
            return
        try:
            stanza = backups.info(self.charm.container, self.charm.state)
        except backups.BackupError as e:
            event.fail(f"cannot read the repository: {e}")
            return
        if stanza is None:
            event.fail("the repository has no stanza for this cluster")
            return
        try:
            target = self.restore_target(dict(event.params), stanza)
        except ValueError as e:
            event.fail(str(e))
            return
        restore = RestoreState.model_validate(
            {"id": secrets.token_hex(4), "started": _utc_now().isoformat(), **target}
        )
        self.charm.start_restore(restore)
        event.set_results(
            {"restore-id": restore.id, "message": "restore started: follow `juju status`"}
        )

    def _on_notice(self, event: ops.PebbleCustomNoticeEvent) -> None:
        if event.notice.key != scheduler.NOTICE or not self.charm.unit.is_leader():
            return
        try:
            kind, at = scheduler.parse_notice(event.notice.last_data)
        except ValueError as e:
            logger.warning("ignoring a malformed schedule notice: %s", e)
            return
        self.charm.record_fired(kind, at.isoformat())
        if self._ready_error():
            logger.warning("scheduled %s backup skipped: %s", kind, self._ready_error())
            return
        cfg = self.charm.state.config
        chosen = (
            "full"
            if kind == "full" or cfg is None
            else ("differential" if cfg.backup_incremental_type == "diff" else "incremental")
        )
        try:
            taken = self.backup(chosen, "schedule")
        except backups.BackupError as e:
            logger.warning("scheduled %s backup failed: %s", kind, e)
            return
        self.charm.record_backup(kind, taken)
