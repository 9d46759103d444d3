"""A restore across the application: the phases the leader drives through the peer data, what
each unit does in each phase, and the pgBackRest bootstrap the restoring unit's Patroni runs."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ops
import pytest
import yaml
from ops import testing

from components import restore
from peer_data import PeerAppData, RestoreState
from state import Snapshot
from tests.unit.builders import (
    APP,
    RID,
    UTC,
    WORKLOAD_EXECS,
    Ctx,
    FakePatroni,
    Mounts,
    backup_state,
    configured,
    during,
    healthy_cluster,
    peer_app_data,
    peer_unit_data,
    restore_data,
    snapshot,
)
from workload import layout, pgbackrest
from workload import patroni as patroni_config

pytestmark = pytest.mark.filterwarnings("ignore:JujuVersion.from_environ:DeprecationWarning")

ACTIVE, INACTIVE = ops.pebble.ServiceStatus.ACTIVE, ops.pebble.ServiceStatus.INACTIVE
ME, OTHER = f"{APP}-0", f"{APP}-1"
FULL = "20261126-153943F"


def all_acked(key: str = restore.STOPPED_KEY) -> dict[int, dict[str, str]]:
    return {1: {key: RID}, 2: {key: RID}}


def postgresql_status(out: testing.State) -> ops.pebble.ServiceStatus:
    return out.get_container(layout.CONTAINER).service_statuses[layout.SERVICE_POSTGRESQL]


def commands(ctx: Ctx) -> list[list[str]]:
    return [e.command for e in ctx.exec_history.get(layout.CONTAINER, [])]


def workload_commands(ctx: Ctx) -> list[list[str]]:
    return [c for c in commands(ctx) if c[0] in ("patronictl", "rm", "sh")]


def on_disk(image: Mounts, path: str) -> Path:
    """Where a path under the workload's home is in the test's filesystem (a mount)."""
    return image["home"].source / Path(path).relative_to(layout.HOME)  # type: ignore[operator]


def put(image: Mounts, path: str, content: str) -> None:
    """A data directory holding one file, PG_VERSION, with `content`."""
    on_disk(image, path).mkdir(parents=True, exist_ok=True)
    (on_disk(image, path) / "PG_VERSION").write_text(content)


def held(image: Mounts, path: str) -> str | None:
    """What `put` wrote in this data directory, or None if it is not there any more."""
    version = on_disk(image, path) / "PG_VERSION"
    return version.read_text() if version.exists() else None


def replay(ctx: Ctx, image: Mounts) -> None:
    """Do on the test's filesystem what the data-moving commands the charm ran (rm, sh -c) would
    have done in the container, in order: ops.testing only records them."""
    home = str(image["home"].source)
    for argv in workload_commands(ctx):
        if argv[0] not in ("rm", "sh"):
            continue
        local = [a.replace(layout.HOME, home) for a in argv]
        paths = re.findall(r"/[^\s\"';]+", " ".join(local[1:]))
        assert paths and all(p.startswith(home + "/") for p in paths), local
        subprocess.run(local, check=True)  # the charm's own commands, confined to the mount


def patroni_bootstrap(ctx: Ctx, out: testing.State) -> dict[str, Any]:
    fs = out.get_container(layout.CONTAINER).get_filesystem(ctx)
    return yaml.safe_load((fs / layout.PATRONI_CONF.lstrip("/")).read_text())["bootstrap"]


# -- pure: which unit holds PostgreSQL, and what Patroni bootstraps with ------------------------


def make_state(restore_: RestoreState | None, unit: int = 0) -> Snapshot:
    return snapshot(
        unit_name=f"{APP}/{unit}", is_leader=unit == 0, peer_data=PeerAppData(restore=restore_)
    )


def restoring(**fields: Any) -> RestoreState:
    return RestoreState.model_validate({"id": RID, "phase": "restoring", "restorer": ME, **fields})


@pytest.mark.parametrize(
    ("phase", "restorer", "holds"),
    [
        (None, "", False),
        ("stopping", "", True),
        ("restoring", ME, False),
        ("restoring", OTHER, True),
        ("replicas", ME, False),
        ("replicas", OTHER, False),
        ("failed", ME, True),
        ("abandoned", "", False),
    ],
)
def test_holds(phase: str | None, restorer: str, holds: bool):
    r = None if phase is None else RestoreState(id=RID, phase=phase, restorer=restorer)
    assert restore.holds(make_state(r)) is holds


def test_bootstrap_command_for_a_backup_set():
    command = restore.bootstrap_command(make_state(restoring(**{"backup-id": FULL})))
    assert command is not None
    argv = shlex.split(command)  # how Patroni runs a custom bootstrap command
    assert argv == pgbackrest.restore(pgbackrest.CONF_FILE, APP, pgbackrest.BackupSet(FULL))
    assert argv[-1] == "restore"
    assert {f"--set={FULL}", "--type=immediate", "--target-action=promote"} <= set(argv)


def test_bootstrap_command_for_the_latest_state():
    command = restore.bootstrap_command(make_state(restoring()))
    assert command is not None
    argv = shlex.split(command)
    assert argv == ["pgbackrest", f"--config={pgbackrest.CONF_FILE}", f"--stanza={APP}", "restore"]


def test_bootstrap_command_for_a_point_in_time():
    moment = datetime.datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    command = restore.bootstrap_command(
        make_state(restoring(**{"target-time": moment.isoformat()}))
    )
    assert command is not None
    argv = shlex.split(command)
    assert argv == pgbackrest.restore(pgbackrest.CONF_FILE, APP, pgbackrest.PointInTime(moment))
    assert "--target=2026-11-26 10:15:00.000000+00" in argv


def test_point_in_time_target_and_promotion_are_in_the_bootstrap_command():
    # Given in another zone: the same moment, in UTC, with the promotion.
    moment = datetime.datetime(
        2026, 11, 26, 11, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    command = restore.bootstrap_command(
        make_state(restoring(**{"target-time": moment.isoformat()}))
    )
    assert command is not None
    assert "2026-11-26 10:15:00.000000+00" in command
    assert "--type=time" in command and "--target-action=promote" in command


@pytest.mark.parametrize(
    "r",
    [
        None,
        RestoreState(id=RID, phase="stopping"),
        RestoreState(id=RID, phase="restoring", restorer=OTHER),
        RestoreState(id=RID, phase="replicas", restorer=ME),
        RestoreState(id=RID, phase="failed", restorer=ME),
    ],
    ids=["none", "stopping", "other-restorer", "replicas", "failed"],
)
def test_no_bootstrap_command_unless_this_unit_restores_now(r: RestoreState | None):
    assert restore.bootstrap_command(make_state(r)) is None


# -- stopping: every unit stops PostgreSQL and says so -----------------------------------------


def test_the_primary_stops_last(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    # Stopped while a replica runs, the primary would have that replica promoted.
    before = configured(ctx, image, patroni, leader=False)  # this unit is Patroni's leader
    waiting = ctx.run(ctx.on.update_status(), during(before, restore_data("stopping")))
    assert postgresql_status(waiting) == ACTIVE
    assert restore.STOPPED_KEY not in peer_unit_data(waiting)
    last = during(before, restore_data("stopping"), acked_by_peers=all_acked())
    out = ctx.run(ctx.on.update_status(), last)
    assert postgresql_status(out) == INACTIVE
    assert peer_unit_data(out)[restore.STOPPED_KEY] == RID


def test_a_leader_that_is_the_primary_stops_last_and_moves_on_in_the_same_hook(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    # No event follows the leader's own acknowledgement: waiting for one would stall the restore.
    before = configured(ctx, image, patroni)  # the leader, and Patroni's leader
    last = during(before, restore_data("stopping"), acked_by_peers=all_acked())
    out = ctx.run(ctx.on.update_status(), last)
    r = peer_app_data(out).restore
    assert r is not None and (r.phase, r.restorer) == ("restoring", ME)


def test_stopping_stops_postgresql_and_acknowledges(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    before = configured(ctx, image, patroni, leader=False)
    patroni.members.clear()
    healthy_cluster(patroni, leader=1, sync=0)  # a replica stops at once
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("stopping")))
    assert postgresql_status(out) == INACTIVE
    assert peer_unit_data(out)[restore.STOPPED_KEY] == RID
    assert out.unit_status == ops.MaintenanceStatus(f"restore {RID}: stopping every member")
    # Only PostgreSQL stops: the pgBackRest server stays up for the restore to come.
    assert out.get_container(layout.CONTAINER).service_statuses["pgbackrest-server"] == ACTIVE


def test_stopping_is_not_undone_by_a_replan(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    before = configured(ctx, image, patroni)
    stopped = during(
        before,
        restore_data("stopping"),
        acked_by_me=RID,
        postgresql=INACTIVE,
        # A change that alters the Pebble layer (the leader's scheduler service).
        config={"backup-schedule-full": "0 2 * * *"},
    )
    replans: list[int] = []
    original = ops.Container.replan

    def counting(self: ops.Container) -> None:
        replans.append(1)
        original(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops.Container, "replan", counting)
        out = ctx.run(ctx.on.config_changed(), stopped)
    assert postgresql_status(out) == INACTIVE
    assert replans == []
    assert peer_app_data(out).restore is not None
    assert peer_app_data(out).restore.phase == "stopping"  # type: ignore[union-attr]


def test_leader_stops_itself_and_acknowledges_first(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    before = configured(ctx, image, patroni)
    patroni.members.clear()
    healthy_cluster(patroni, leader=1, sync=0)  # a replica: it need not wait for the others
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("stopping")))
    assert postgresql_status(out) == INACTIVE
    assert peer_unit_data(out)[restore.STOPPED_KEY] == RID
    assert not workload_commands(ctx)  # the others have not acknowledged yet
    assert peer_app_data(out).restore.phase == "stopping"  # type: ignore[union-attr]


def test_leader_waits_for_every_units_acknowledgement(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    partly = during(
        before,
        restore_data("stopping"),
        acked_by_me=RID,
        postgresql=INACTIVE,
        acked_by_peers={1: {restore.STOPPED_KEY: RID}, 2: {restore.STOPPED_KEY: "an-older-one"}},
    )
    out = ctx.run(ctx.on.update_status(), partly)
    assert not workload_commands(ctx)
    # Started a minute ago, well within STOP_TIMEOUT: it keeps waiting, stopped.
    assert peer_app_data(out).restore.phase == "stopping"  # type: ignore[union-attr]
    assert postgresql_status(out) == INACTIVE


def test_a_unit_that_never_stops_abandons_the_restore_and_every_member_runs_again(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    stuck = during(
        before,
        restore_data("stopping", started=restore.STOP_TIMEOUT + datetime.timedelta(minutes=1)),
        acked_by_me=RID,
        postgresql=INACTIVE,
        acked_by_peers={1: {restore.STOPPED_KEY: RID}, 2: {}},
    )
    out = ctx.run(ctx.on.update_status(), stuck)
    r = peer_app_data(out).restore
    silent = f"{APP}/2 did not stop PostgreSQL within 10 min"
    assert r is not None and (r.phase, r.message) == ("abandoned", silent)
    assert not workload_commands(ctx)  # the cluster was not touched: nothing set aside
    assert postgresql_status(out) == ACTIVE
    assert out.app_status == ops.BlockedStatus(
        f"restore {RID} abandoned, nothing changed: {silent}"
    )
    assert not isinstance(out.unit_status, ops.BlockedStatus | ops.MaintenanceStatus)


def test_once_every_unit_stopped_the_leader_forgets_the_cluster_and_restores_itself(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni, s3="valid")
    put(image, layout.PGDATA, "the cluster before the restore")
    patroni.reachable = False  # every Patroni is stopped
    state = during(
        before,
        restore_data("stopping", **{"backup-id": FULL}),
        acked_by_me=RID,
        acked_by_peers=all_acked(),
        postgresql=INACTIVE,
    )
    out = ctx.run(ctx.on.update_status(), state)

    remove, *rest = [
        e for e in ctx.exec_history[layout.CONTAINER] if e.command[0] in ("patronictl", "rm", "sh")
    ]
    assert remove.command == ["patronictl", "-c", layout.PATRONI_CONF, "remove", APP]
    assert remove.stdin == f"{APP}\nYes I am aware\n"
    assert remove.environment == patroni_config.dcs_environment(
        APP, out.model.name, remove.environment["PATRONI_KUBERNETES_POD_IP"]
    )
    assert remove.environment["PATRONI_KUBERNETES_NAMESPACE"] == out.model.name
    assert (remove.user, remove.group) == (layout.WORKLOAD_USER, layout.WORKLOAD_GROUP)
    # The data is moved aside, not deleted: it can be put back if the restore fails.
    assert [e.command[:2] for e in rest] == [["sh", "-c"]]
    assert all((e.user, e.group) == (layout.WORKLOAD_USER, layout.WORKLOAD_GROUP) for e in rest)
    replay(ctx, image)
    assert held(image, restore.ASIDE) == "the cluster before the restore"
    assert not on_disk(image, layout.PGDATA).exists()  # Patroni bootstraps into an empty one

    r = peer_app_data(out).restore
    assert r is not None and (r.phase, r.restorer, r.backup_id) == ("restoring", ME, FULL)
    bootstrap = patroni_bootstrap(ctx, out)
    assert bootstrap["method"] == "pgbackrest"
    assert bootstrap["pgbackrest"]["keep_existing_recovery_conf"] is True
    assert bootstrap["pgbackrest"]["no_params"] is True
    assert shlex.split(bootstrap["pgbackrest"]["command"]) == pgbackrest.restore(
        pgbackrest.CONF_FILE, APP, pgbackrest.BackupSet(FULL)
    )
    assert out.unit_status == ops.MaintenanceStatus(f"restore {RID}: restoring on {ME}")


def test_the_restorer_starts_patroni_to_bootstrap_from_the_backup(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.reachable = False
    state = during(
        before,
        restore_data("stopping", **{"backup-id": FULL}),
        acked_by_me=RID,
        acked_by_peers=all_acked(),
        postgresql=INACTIVE,
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert peer_app_data(out).restore.phase == "restoring"  # type: ignore[union-attr]
    assert postgresql_status(out) == ACTIVE


# A unit the restore releases (the restorer in `restoring`, the others in `replicas`) starts
# PostgreSQL even when its Pebble layer is the same as before the restore: here the cluster had
# no primary before (the exporter already disabled), so nothing else would replan.
@pytest.mark.parametrize(
    ("leader", "phase", "restorer"),
    [(True, "restoring", ME), (False, "replicas", OTHER)],
    ids=["restorer", "replica"],
)
def test_restoring_a_cluster_that_had_no_primary_starts_patroni_again(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, leader: bool, phase: str, restorer: str
):
    healthy_cluster(patroni)
    patroni.reachable = False  # the cluster is down: the reason for the restore
    before = ctx.run(
        ctx.on.config_changed(), backup_state(image, leader=leader, execs=WORKLOAD_EXECS)
    )
    state = during(
        before, restore_data(phase, restorer=restorer), acked_by_me=RID, postgresql=INACTIVE
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert postgresql_status(out) == ACTIVE


def test_dcs_removal_failing_fails_the_restore_and_keeps_the_data(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    execs = [
        testing.Exec(["patronictl"], return_code=1, stderr="Error: boom"),
        *WORKLOAD_EXECS[1:],
    ]
    before = configured(ctx, image, patroni, execs=execs)
    patroni.reachable = False
    state = during(
        before,
        restore_data("stopping"),
        acked_by_me=RID,
        acked_by_peers=all_acked(),
        postgresql=INACTIVE,
    )
    out = ctx.run(ctx.on.update_status(), state)
    r = peer_app_data(out).restore
    assert r is not None and r.phase == "failed"
    assert r.message.startswith("cannot prepare: ")
    assert not [c for c in commands(ctx) if c[0] in ("rm", "sh", "mv")]  # nothing moved
    assert postgresql_status(out) == INACTIVE
    assert out.unit_status == ops.BlockedStatus(f"restore {RID} failed: {r.message}")


def test_a_retried_restore_keeps_the_data_the_failed_one_set_aside(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    # The first attempt moved the data aside, then failed: its PGDATA is a partial restore.
    before = configured(ctx, image, patroni)
    put(image, restore.ASIDE, "the cluster before the first attempt")
    put(image, layout.PGDATA, "a partial restore")
    patroni.reachable = False
    again = "cd34ef56"
    state = during(
        before,
        restore_data("stopping", id=again, **{"backup-id": FULL}),
        acked_by_me=again,
        acked_by_peers={i: {restore.STOPPED_KEY: again} for i in (1, 2)},
        postgresql=INACTIVE,
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert ["rm", "-rf", restore.ASIDE] not in commands(ctx)
    replay(ctx, image)
    assert held(image, restore.ASIDE) == "the cluster before the first attempt"
    assert not on_disk(image, layout.PGDATA).exists()
    r = peer_app_data(out).restore
    assert r is not None and (r.id, r.phase, r.restorer) == (again, "restoring", ME)


def test_a_restore_without_a_data_directory_sets_nothing_aside(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    assert not on_disk(image, layout.PGDATA).exists()
    patroni.reachable = False
    state = during(
        before,
        restore_data("stopping"),
        acked_by_me=RID,
        acked_by_peers=all_acked(),
        postgresql=INACTIVE,
    )
    out = ctx.run(ctx.on.update_status(), state)
    replay(ctx, image)
    assert not on_disk(image, restore.ASIDE).exists()
    assert peer_app_data(out).restore.phase == "restoring"  # type: ignore[union-attr]


def test_a_later_restore_sets_aside_the_data_the_cluster_had_just_before_it(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    # Restore 1: this unit restored; leadership moved and the new leader finished the restore.
    before = configured(ctx, image, patroni, leader=False)
    put(image, restore.ASIDE, "the cluster before restore 1")
    put(image, layout.PGDATA, "restored by restore 1")
    for state in (during(before, restore_data("replicas", restorer=ME), acked_by_me=RID), before):
        ctx.run(ctx.on.update_status(), state)
        replay(ctx, image)
        ctx.exec_history.clear()
    put(image, layout.PGDATA, "restore 1 and what was written since")

    # Restore 2, led by this unit, once every member stopped.
    patroni.reachable = False
    second = "cd34ef56"
    state = during(
        dataclasses.replace(before, leader=True),
        restore_data("stopping", id=second),
        acked_by_me=second,
        acked_by_peers={i: {restore.STOPPED_KEY: second} for i in (1, 2)},
        postgresql=INACTIVE,
    )
    ctx.run(ctx.on.update_status(), state)
    replay(ctx, image)
    assert held(image, restore.ASIDE) == "restore 1 and what was written since"


# -- restoring: the restorer recovers and leads ------------------------------------------------


def test_restorer_leading_and_running_moves_on_to_the_replicas(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.members = []
    patroni.add_member(ME, "leader")
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("restoring", restorer=ME)))
    r = peer_app_data(out).restore
    assert r is not None and (r.phase, r.restorer) == ("replicas", ME)
    assert "method" not in patroni_bootstrap(ctx, out)  # back to initdb for any later bootstrap
    assert out.unit_status == ops.MaintenanceStatus(f"restore {RID}: re-cloning the other members")


def test_restorer_still_recovering_stays_in_restoring(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.members = []
    patroni.add_member(ME, "replica", "running custom bootstrap script")
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("restoring", restorer=ME)))
    r = peer_app_data(out).restore
    assert r is not None and r.phase == "restoring"
    assert patroni_bootstrap(ctx, out)["method"] == "pgbackrest"


def test_recovery_that_cannot_reach_its_target_gives_the_data_back_at_once(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.reachable = False  # Patroni exits after a failed bootstrap; Pebble starts it again
    put(image, restore.ASIDE + "/PG_VERSION", "the data from before")
    put(image, restore.FAILED + "/PG_VERSION", "what the failed recovery left")
    reason = "recovery ended before configured recovery target was reached"
    state = during(before, restore_data("restoring", restorer=ME))
    ctr = state.get_container(layout.CONTAINER)
    fatal = testing.Exec(["sh", "-c"], stdout=reason + "\n")  # the PostgreSQL log's last FATAL
    state = dataclasses.replace(
        state, containers=[dataclasses.replace(ctr, execs={*ctr.execs, fatal})]
    )
    out = ctx.run(ctx.on.update_status(), state)
    r = peer_app_data(out).restore
    message = f"recovery failed, the data from before is back: {reason}"
    assert r is not None and (r.phase, r.message) == ("abandoned", message)
    assert out.app_status == ops.BlockedStatus(
        f"restore {RID} abandoned, nothing changed: {message}"
    )
    assert postgresql_status(out) == ACTIVE  # every member runs its own data again
    putting_back = [c for c in workload_commands(ctx) if restore.ASIDE in " ".join(c)]
    assert putting_back and f'mv "{restore.ASIDE}" "{layout.PGDATA}"' in putting_back[-1][-1]


@pytest.mark.parametrize("backup_after_the_restore", [False, True])
def test_an_abandoned_restore_is_reported_until_a_backup_succeeds_after_it(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, backup_after_the_restore: bool
):
    before = configured(ctx, image, patroni)
    abandoned = restore_data("abandoned", started=datetime.timedelta(hours=1), message="why")
    at = datetime.datetime.now(UTC) - datetime.timedelta(
        hours=0 if backup_after_the_restore else 2
    )
    state = during(before, abandoned)
    peer = state.get_relations("database-peers")[0]
    app = {**peer.local_app_data, "backup-succeeded": json.dumps({"full": at.isoformat()})}
    others = [r for r in state.relations if r.endpoint != "database-peers"]
    state = dataclasses.replace(
        state, relations=[dataclasses.replace(peer, local_app_data=app), *others]
    )
    out = ctx.run(ctx.on.update_status(), state)
    if backup_after_the_restore:
        assert peer_app_data(out).restore is None
    else:
        assert out.app_status == ops.BlockedStatus(
            f"restore {RID} abandoned, nothing changed: why"
        )


def test_recovery_that_takes_too_long_fails_the_restore(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.reachable = False
    late = restore_data(
        "restoring", started=restore.RESTORE_TIMEOUT + datetime.timedelta(minutes=1), restorer=ME
    )
    out = ctx.run(ctx.on.update_status(), during(before, late))
    r = peer_app_data(out).restore
    assert r is not None and (r.phase, r.message) == ("failed", "recovery did not finish")
    assert out.unit_status == ops.BlockedStatus(f"restore {RID} failed: recovery did not finish")


def test_a_unit_that_does_not_restore_stays_stopped_while_the_restorer_recovers(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni, leader=False)
    state = during(
        before, restore_data("restoring", restorer=OTHER), acked_by_me=RID, postgresql=INACTIVE
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert postgresql_status(out) == INACTIVE
    assert "method" not in patroni_bootstrap(ctx, out)
    assert out.unit_status == ops.MaintenanceStatus(f"restore {RID}: restoring on {OTHER}")


# -- replicas: the others empty their data and clone the restored primary ----------------------


def test_other_units_empty_their_data_once_to_clone_the_restored_primary(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni, leader=False)
    state = during(
        before, restore_data("replicas", restorer=OTHER), acked_by_me=RID, postgresql=INACTIVE
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert ["rm", "-rf", layout.PGDATA] in commands(ctx)
    [rm] = [e for e in ctx.exec_history[layout.CONTAINER] if e.command[0] == "rm"]
    assert (rm.user, rm.group) == (layout.WORKLOAD_USER, layout.WORKLOAD_GROUP)
    assert peer_unit_data(out)[restore.RESET_KEY] == RID

    ctx.exec_history.clear()
    again = ctx.run(ctx.on.update_status(), out)
    assert not workload_commands(ctx)  # a clone in progress is never wiped again
    assert peer_unit_data(again)[restore.RESET_KEY] == RID


def test_other_units_start_patroni_again_to_clone(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    before = configured(ctx, image, patroni, leader=False)
    patroni.reachable = False  # this unit's own Patroni is stopped
    state = during(
        before, restore_data("replicas", restorer=OTHER), acked_by_me=RID, postgresql=INACTIVE
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert postgresql_status(out) == ACTIVE


def test_restorer_keeps_its_restored_data_in_replicas(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.members[2]["state"] = "creating replica"
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("replicas", restorer=ME)))
    assert ["rm", "-rf", layout.PGDATA] not in commands(ctx)
    assert restore.RESET_KEY not in peer_unit_data(out)


def test_restore_is_done_once_every_member_is_healthy(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("replicas", restorer=ME)))
    assert peer_app_data(out).restore is None
    assert ["rm", "-rf", restore.ASIDE] in commands(ctx)  # the data moved aside goes now
    assert out.unit_status == ops.ActiveStatus("primary")
    assert out.app_status.name == "active"


def test_a_leader_that_did_not_restore_finishes_the_restore_and_keeps_its_files(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    # Leadership moved during the restore: the data moved aside is on the restorer, not here.
    before = configured(ctx, image, patroni)
    state = during(before, restore_data("replicas", restorer=OTHER), acked_by_me=RID)
    out = ctx.run(ctx.on.update_status(), state)
    assert peer_app_data(out).restore is None
    assert ["rm", "-rf", restore.ASIDE] not in commands(ctx)


def test_restore_is_not_done_while_a_member_still_clones(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.members[2]["state"] = "creating replica"
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("replicas", restorer=ME)))
    r = peer_app_data(out).restore
    assert r is not None and r.phase == "replicas"
    assert ["rm", "-rf", restore.ASIDE] not in commands(ctx)
    assert out.app_status == ops.MaintenanceStatus(f"restore {RID}: re-cloning the other members")


def test_restore_waits_for_the_planned_number_of_members(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni)
    patroni.members = patroni.members[:2]  # the third member has not joined again yet
    out = ctx.run(ctx.on.update_status(), during(before, restore_data("replicas", restorer=ME)))
    assert peer_app_data(out).restore is not None


def test_failed_restore_keeps_every_unit_stopped(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    before = configured(ctx, image, patroni, leader=False)
    failed = restore_data("failed", restorer=OTHER, message="recovery did not finish")
    out = ctx.run(ctx.on.update_status(), during(before, failed, postgresql=ACTIVE))
    assert postgresql_status(out) == INACTIVE
    assert out.unit_status == ops.BlockedStatus(f"restore {RID} failed: recovery did not finish")


@pytest.mark.parametrize(
    ("current", "stops"),
    [("backoff", True), ("error", True), ("active", True), ("inactive", False)],
)
def test_stopping_also_stops_a_service_pebble_is_about_to_restart(current: str, stops: bool):
    # A Patroni in `backoff` (crash-looping, as it may be in the broken cluster one restores)
    # would be started again by Pebble after the delay, behind the restore's back.
    # ops.testing cannot show a service in Pebble's `backoff` state: a stand-in container can.
    stopped: list[str] = []
    # As Pebble's API answers (ops has no enum member for `backoff`: it stays a string).
    info = ops.pebble.ServiceInfo.from_dict(
        {"name": layout.SERVICE_POSTGRESQL, "startup": "enabled", "current": current}
    )
    container = SimpleNamespace(
        get_services=lambda *names: {layout.SERVICE_POSTGRESQL: info},
        stop=lambda *names: stopped.extend(names),
    )
    databag: dict[str, str] = {}
    container.exists = lambda path: False
    peers = SimpleNamespace(ack=lambda s, key, value: databag.update({key: value}) or s)
    state = make_state(RestoreState(id=RID, phase="stopping"), unit=1)
    restore.unit_step(state, SimpleNamespace(container=container, peers=peers))  # type: ignore[arg-type]
    assert databag[restore.STOPPED_KEY] == RID
    assert stopped == ([layout.SERVICE_POSTGRESQL] if stops else [])
