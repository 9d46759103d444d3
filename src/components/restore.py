"""A restore across the application: stop every member, restore one, re-clone the others.

The leader drives it through the peer data (`restore`), one phase per step, each step safe to
repeat. Every unit keeps PostgreSQL stopped until its phase lets it start:
  stopping  - every unit stops Patroni (and so PostgreSQL) and says so in its unit databag;
  restoring - the leader's unit forgets the cluster in the DCS, moves its data aside, and starts
              Patroni with a pgBackRest bootstrap: PostgreSQL recovers to the target, promotes;
  replicas  - the other units empty their data directory and start: Patroni clones them;
  done      - every member is healthy: the peer data is cleared.
The primary stops last, so that no replica is promoted meanwhile. A failure stops the machine
in `failed` with the reason; nothing is deleted, so the data moved aside can be put back. A unit
that does not stop in time `abandoned`s the restore before anything changed, and a recovery that
fails (a target the archive cannot reach) puts the data from before back and abandons it too:
every member runs again. An abandoned restore is reported until a backup succeeds after it.
"""

from __future__ import annotations

import datetime
import logging
import shlex

import ops

import goal
from components import Component, Io, backups
from peer_data import RestoreState
from state import Ready, Snapshot
from workload import layout, patroni, pgbackrest
from workload import patroni_client as rest

logger = logging.getLogger(__name__)

STOPPED_KEY = "restore-stopped"
RESET_KEY = "restore-reset"
ASIDE = layout.PGDATA + ".before-restore"
FAILED = layout.PGDATA + ".failed"  # where Patroni moves a data directory it failed to bootstrap
# Recovery replays WAL: allow for a large archive before calling the restore failed.
RESTORE_TIMEOUT = datetime.timedelta(hours=6)
# Stopping takes a hook on each unit; a unit silent for this long is stuck or gone.
STOP_TIMEOUT = datetime.timedelta(minutes=10)


def bootstrap_command(state: Snapshot) -> str | None:
    """The pgBackRest restore Patroni runs to bootstrap, on the restoring unit only."""
    r = state.peer_data.restore
    if r is None or r.phase != "restoring" or r.restorer != state.member:
        return None
    target: pgbackrest.RestoreTarget
    if r.target_time:
        target = pgbackrest.PointInTime(datetime.datetime.fromisoformat(r.target_time))
    elif r.backup_id:
        target = pgbackrest.BackupSet(r.backup_id)
    else:
        target = pgbackrest.Latest()
    argv = pgbackrest.restore(pgbackrest.CONF_FILE, backups.stanza_name(state), target)
    return shlex.join(argv)  # Patroni splits it the way a shell would


def holds(state: Snapshot) -> bool:
    """Whether this unit must keep PostgreSQL stopped now."""
    r = state.peer_data.restore
    if r is None or r.phase in ("replicas", "abandoned"):
        return False
    return not (r.phase == "restoring" and r.restorer == state.member)


def unit_step(s: Snapshot, io: Io) -> Snapshot:
    """This unit's part: stop and say so; later, empty the data directory before re-cloning."""
    r = s.peer_data.restore
    if r is None and io.container.exists(ASIDE):
        # The restore is over (possibly finished under another leader): the old data can go.
        _run(io.container, ["rm", "-rf", ASIDE])
    if r is None or not s.peers_related:
        return s
    if holds(s):
        if _primary_waits(s, r):
            return s
        services = io.container.get_services(layout.SERVICE_POSTGRESQL)
        running = services.get(layout.SERVICE_POSTGRESQL)
        # Also a Patroni in backoff: Pebble would start it again behind the restore's back.
        if running is not None and running.current != ops.pebble.ServiceStatus.INACTIVE:
            logger.info("restore %s: stopping PostgreSQL", r.id)
            io.container.stop(layout.SERVICE_POSTGRESQL)
        return io.peers.ack(s, STOPPED_KEY, r.id)
    if r.phase == "replicas" and r.restorer != s.member and s.own_data.get(RESET_KEY) != r.id:
        logger.info("restore %s: emptying the data directory to clone the restored primary", r.id)
        _run(io.container, ["rm", "-rf", layout.PGDATA])
        return io.peers.ack(s, RESET_KEY, r.id)
    return s


def _primary_waits(s: Snapshot, r: RestoreState) -> bool:
    """The primary stops last: stopped first, Patroni would promote a replica (a new timeline)."""
    leader = s.cluster.leader if s.cluster else None
    if r.phase != "stopping" or leader is None or leader.name != s.member:
        return False
    return any(u != s.unit_name for u in s.not_acked(STOPPED_KEY, r.id))


def _run(container: ops.Container, argv: list[str], timeout: float = 600) -> str:
    """Run a command as the workload user; its output."""
    process = container.exec(
        argv, user=layout.WORKLOAD_USER, group=layout.WORKLOAD_GROUP, timeout=timeout
    )
    return process.wait_output()[0]


def leader_step(
    container: ops.Container, state: Snapshot, status: rest.ClusterStatus | None
) -> RestoreState | None:
    """Leader: move the restore one phase on when its condition holds; the new state (None: done)."""
    r = state.peer_data.restore
    assert r is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    elapsed = (
        now - datetime.datetime.fromisoformat(r.started) if r.started else datetime.timedelta()
    )
    if r.phase == "stopping":
        return _after_stopping(container, state, r, elapsed)
    if r.phase == "restoring":
        leader = status.leader if status else None
        if leader is not None and leader.name == r.restorer and leader.state == "running":
            return r.model_copy(update={"phase": "replicas"})
        if (reason := recovery_failure(container)) is not None:
            return _give_back(container, r, reason)
        if elapsed > RESTORE_TIMEOUT:
            return r.model_copy(update={"phase": "failed", "message": "recovery did not finish"})
    if r.phase == "replicas" and status is not None:
        healthy = [m for m in status.members if m.is_healthy]
        if len(healthy) >= state.planned_units and status.leader is not None:
            logger.info("restore %s: done", r.id)
            if r.restorer == state.member:
                _run(container, ["rm", "-rf", ASIDE])
            return None
    return r


# FATALs of client sessions (Patroni and the exporter knock while PostgreSQL recovers): the
# reason is the startup process's own FATAL, not theirs.
_SESSION_FATALS = (
    "the database system is (starting up|shutting down|not yet accepting connections)"
    "|terminating connection|authentication failed|no pg_hba.conf entry"
)


def recovery_failure(container: ops.Container) -> str | None:
    """Why the restore's recovery failed, or None while it has not.

    Patroni renames a data directory whose bootstrap failed to `<pgdata>.failed` (and, started
    again by Pebble, would restore and fail over and over). PostgreSQL's last FATAL line says
    why: a target the archive cannot reach ends recovery before it.
    """
    if not container.exists(FAILED):
        return None
    newest_log_fatal = (
        f'log=$(ls -t "{layout.PG_LOG_DIR}"/*.log 2>/dev/null | head -n 1);'
        ' [ -n "$log" ] && grep -h "FATAL:" "$log"'
        f' | grep -v -E "{_SESSION_FATALS}" | tail -n 1 | sed "s/.*FATAL: *//"'
    )
    try:
        reason = _run(container, ["sh", "-c", newest_log_fatal + "; true"], timeout=30).strip()
    except ops.pebble.Error:
        reason = ""
    return reason or "PostgreSQL did not start from the backup"


def _give_back(container: ops.Container, r: RestoreState, reason: str) -> RestoreState:
    """The restore cannot finish: the data from before goes back and every member runs again."""
    logger.warning(
        "restore %s: recovery failed (%s); putting the data from before back", r.id, reason
    )
    container.stop(layout.SERVICE_POSTGRESQL)
    back = (
        f'rm -rf "{layout.PGDATA}" "{FAILED}";'
        f' if [ -e "{ASIDE}" ]; then mv "{ASIDE}" "{layout.PGDATA}"; fi'
    )
    _run(container, ["sh", "-c", back])
    message = f"recovery failed, the data from before is back: {reason}"
    return r.model_copy(update={"phase": "abandoned", "message": message})


def _after_stopping(
    container: ops.Container, state: Snapshot, r: RestoreState, elapsed: datetime.timedelta
) -> RestoreState:
    """Once every unit stopped: forget the cluster, set the data aside, restore here."""
    if silent := state.not_acked(STOPPED_KEY, r.id):
        if elapsed <= STOP_TIMEOUT:
            return r
        minutes = STOP_TIMEOUT.total_seconds() / 60
        message = f"{', '.join(silent)} did not stop PostgreSQL within {minutes:.0f} min"
        logger.warning("restore %s abandoned: %s", r.id, message)
        return r.model_copy(update={"phase": "abandoned", "message": message})
    try:
        backups.dcs_remove(container, state)
        # The data from before the first attempt stays aside until a restore succeeds.
        keep = (
            f'rm -rf "{FAILED}"; if [ -e "{ASIDE}" ]; then rm -rf "{layout.PGDATA}";'
            f' elif [ -e "{layout.PGDATA}" ]; then mv "{layout.PGDATA}" "{ASIDE}"; fi'
        )
        _run(container, ["sh", "-c", keep])
    except ops.pebble.Error as e:
        return r.model_copy(update={"phase": "failed", "message": f"cannot prepare: {e}"})
    logger.info("restore %s: restoring on %s", r.id, state.member)
    return r.model_copy(update={"phase": "restoring", "restorer": state.member})


class Restore(Component):
    """The restore across the application, one phase per step (see the module docstring)."""

    def prepare(self, s: Snapshot, io: Io) -> Snapshot:
        """Leader: move the restore on when its phase's condition holds."""
        r = s.peer_data.restore
        if r is None or not s.container.can_connect:
            return s
        if r.phase == "abandoned":
            # The cluster runs its own data: the report stays until a backup protects it again.
            return io.peers.save(s, {"restore": None}) if superseded(s, r) else s
        return io.peers.save(s, {"restore": leader_step(io.container, s, s.cluster)})

    def unit_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Stop, or empty the data directory, as the phase asks."""
        return unit_step(s, io)

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Leader: the same again after the unit steps.

        The leader's own step can be what the phase waits for (the primary stops last, and is
        often the leader): no later event would come for its own acknowledgement.
        """
        return self.prepare(s, io)

    def contribute(self, s: Snapshot, r: Ready) -> goal.Contribution:
        """Hold PostgreSQL stopped, or bootstrap it from the backup on the restoring unit."""
        command = bootstrap_command(s)
        return goal.Contribution(
            patroni=patroni.bootstrap_from_backup(command) if command else {},
            hold=holds(s),
            # Released: start even if the plan is the same.
            replan=s.peer_data.restore is not None and not holds(s),
        )

    def unit_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """The restore's phase while it runs (an abandoned one changed nothing here)."""
        status = restore_status(s.peer_data.restore, unit=True)
        return [status] if status else []

    def app_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """The restore's phase, or why it failed or was abandoned."""
        status = restore_status(s.peer_data.restore)
        return [status] if status else []


def superseded(s: Snapshot, r: RestoreState) -> bool:
    """Whether a backup succeeded after the restore started."""
    started = datetime.datetime.fromisoformat(r.started) if r.started else None
    return started is not None and any(
        datetime.datetime.fromisoformat(at) > started
        for at in s.peer_data.backup_succeeded.values()
    )


def restore_status(r: RestoreState | None, *, unit: bool = False) -> ops.StatusBase | None:
    """What a restore in progress (or failed) tells the operator.

    An abandoned restore changed nothing: units show their member again, the app says why.
    """
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
