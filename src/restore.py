"""A restore across the application: stop every member, restore one, re-clone the others.

The leader drives it through the peer data (`restore`), one phase per step, each step safe to
repeat. Every unit keeps PostgreSQL stopped until its phase lets it start:
  stopping  - every unit stops Patroni (and so PostgreSQL) and says so in its unit databag;
  restoring - the leader's unit forgets the cluster in the DCS, moves its data aside, and starts
              Patroni with a pgBackRest bootstrap: PostgreSQL recovers to the target, promotes;
  replicas  - the other units empty their data directory and start: Patroni clones them;
  done      - every member is healthy: the peer data is cleared.
A failure stops the machine in `failed` with the reason; nothing is deleted, so the data moved
aside can be put back. A unit that does not stop in time `abandoned`s the restore before anything
changed: every member runs again.
"""

from __future__ import annotations

import datetime
import logging
import shlex

import ops

import backups
from state import RestoreState, State
from workload import layout, patroni, pgbackrest

logger = logging.getLogger(__name__)

STOPPED_KEY = "restore-stopped"
RESET_KEY = "restore-reset"
ASIDE = layout.PGDATA + ".before-restore"
# Recovery replays WAL: allow for a large archive before calling the restore failed.
RESTORE_TIMEOUT = datetime.timedelta(hours=6)
# Stopping takes a hook on each unit; a unit silent for this long is stuck or gone.
STOP_TIMEOUT = datetime.timedelta(minutes=10)


def bootstrap_command(state: State) -> str | None:
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


def holds(state: State) -> bool:
    """Whether this unit must keep PostgreSQL stopped now."""
    r = state.peer_data.restore
    if r is None or r.phase in ("replicas", "abandoned"):
        return False
    return not (r.phase == "restoring" and r.restorer == state.member)


def unit_step(container: ops.Container, unit: ops.Unit, state: State) -> None:
    """This unit's part: stop and say so; later, empty the data directory before re-cloning."""
    r = state.peer_data.restore
    if r is None and container.exists(ASIDE):
        # The restore is over (possibly finished under another leader): the old data can go.
        _run(container, ["rm", "-rf", ASIDE])
    if r is None or state.peers is None:
        return
    databag = state.peers.data[unit]
    if holds(state):
        services = container.get_services(layout.SERVICE_POSTGRESQL)
        running = services.get(layout.SERVICE_POSTGRESQL)
        # Also a Patroni in backoff: Pebble would start it again behind the restore's back.
        if running is not None and running.current != ops.pebble.ServiceStatus.INACTIVE:
            logger.info("restore %s: stopping PostgreSQL", r.id)
            container.stop(layout.SERVICE_POSTGRESQL)
        if databag.get(STOPPED_KEY) != r.id:
            databag[STOPPED_KEY] = r.id
        return
    if r.phase == "replicas" and r.restorer != state.member and databag.get(RESET_KEY) != r.id:
        logger.info("restore %s: emptying the data directory to clone the restored primary", r.id)
        _run(container, ["rm", "-rf", layout.PGDATA])
        databag[RESET_KEY] = r.id


def _run(container: ops.Container, argv: list[str]) -> None:
    container.exec(
        argv, user=layout.WORKLOAD_USER, group=layout.WORKLOAD_GROUP, timeout=600
    ).wait_output()


def _not_acked(state: State, key: str, value: str) -> list[str]:
    """Units (this one included) that have not written `key: value` in their unit databags."""
    if state.peers is None:
        return [state.unit_name]
    missing = [] if state.peer_unit_data.get(key) == value else [state.unit_name]
    missing += sorted(u.name for u in state.peers.units if state.peers.data[u].get(key) != value)
    return missing


def leader_step(
    container: ops.Container, state: State, status: patroni.ClusterStatus | None
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


def _after_stopping(
    container: ops.Container, state: State, r: RestoreState, elapsed: datetime.timedelta
) -> RestoreState:
    """Once every unit stopped: forget the cluster, set the data aside, restore here."""
    if silent := _not_acked(state, STOPPED_KEY, r.id):
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
            f'if [ -e "{ASIDE}" ]; then rm -rf "{layout.PGDATA}";'
            f' elif [ -e "{layout.PGDATA}" ]; then mv "{layout.PGDATA}" "{ASIDE}"; fi'
        )
        _run(container, ["sh", "-c", keep])
    except ops.pebble.Error as e:
        return r.model_copy(update={"phase": "failed", "message": f"cannot prepare: {e}"})
    logger.info("restore %s: restoring on %s", r.id, state.member)
    return r.model_copy(update={"phase": "restoring", "restorer": state.member})
