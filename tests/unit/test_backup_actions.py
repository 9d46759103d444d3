"""The backup actions (create-backup, list-backups, restore) and the scheduler's notices, through the
charm, with pgBackRest's commands answered as pgBackRest answers them."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import ops
import pytest
from ops import testing

from actions import backups as backup_actions
from components import restore
from tests.unit.builders import (
    APP,
    INFO_PROBE,
    PGBACKREST,
    PROBE,
    UTC,
    WORKLOAD_EXECS,
    Ctx,
    FakeDatabase,
    FakePatroni,
    Mounts,
    backup_state,
    configured,
    during,
    exec_timing_out_for_pgbackrest,
    healthy_cluster,
    info_json,
    peer_app_data,
    peer_unit_data,
    restore_data,
    run_failing,
)
from workload import layout, pgbackrest, scheduler

pytestmark = pytest.mark.filterwarnings("ignore:JujuVersion.from_environ:DeprecationWarning")

NOW = datetime.datetime.now(UTC).replace(microsecond=0)
FIRST_STOP = NOW - datetime.timedelta(days=2)
LAST_STOP = NOW - datetime.timedelta(days=1)
FULL = "20261124-020000F"
INCR = "20261124-020000F_20261125-020000I"
TWO_BACKUPS = info_json(
    (FULL, "full", int(FIRST_STOP.timestamp())), (INCR, "incr", int(LAST_STOP.timestamp()))
)
NO_SUCH_BUCKET = (
    "ERROR: [039]: HTTP request failed with 404 (NOT FOUND):\n"
    "       *** Response Content ***:\n"
    "       <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
    "</Error>\n"
)
HTTP_403 = "ERROR: [039]: HTTP request failed with 403 (FORBIDDEN):\n"


def info(stdout: str = TWO_BACKUPS, **kwargs: Any) -> testing.Exec:
    return testing.Exec(
        [*PGBACKREST, "--output=json", *INFO_PROBE, "info"], stdout=stdout, **kwargs
    )


def backup(kind: str = "full", **kwargs: Any) -> testing.Exec:
    return testing.Exec([*PGBACKREST, f"--type={kind}"], **kwargs)


def after_backup(label: str, kind: str) -> testing.Exec:
    """`info` once a backup of `kind` was added after the two listed."""
    stop = int(NOW.timestamp()) - 5
    listed = info_json(
        (FULL, "full", int(FIRST_STOP.timestamp())),
        (INCR, "incr", int(LAST_STOP.timestamp())),
        (label, kind, stop),
    )
    return info(stdout=listed)


def new_label(pgbackrest_type: str) -> str:
    """The label pgBackRest gives a backup of this type taken after the two listed."""
    suffix = {"full": "F", "diff": "D", "incr": "I"}[pgbackrest_type]
    return "20261126-020000F" if suffix == "F" else f"{FULL}_20261126-020000{suffix}"


def pgbackrest_commands(ctx: Ctx) -> list[list[str]]:
    return [
        e.command
        for e in ctx.exec_history.get(layout.CONTAINER, [])
        if e.command[0] == "pgbackrest"
    ]


# -- create-backup -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "pgbackrest_type"),
    [("full", "full"), ("differential", "diff"), ("incremental", "incr")],
)
def test_create_backup_reports_what_pgbackrest_recorded(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, kind: str, pgbackrest_type: str
):
    healthy_cluster(patroni)
    label = new_label(pgbackrest_type)
    state = backup_state(
        image, execs=[backup(pgbackrest_type), after_backup(label, pgbackrest_type)]
    )
    out = ctx.run(ctx.on.action("create-backup", params={"type": kind}), state)

    stop = datetime.datetime.fromtimestamp(int(NOW.timestamp()) - 5, UTC)
    assert ctx.action_results == {
        "backup-id": label,
        "type": pgbackrest_type,
        "size": "23068672",
        "stop": stop.isoformat(),
    }
    [taken, listed] = pgbackrest_commands(ctx)
    # From a standby (there are two healthy ones); the option goes before the command name.
    assert taken == [
        *PGBACKREST,
        f"--type={pgbackrest_type}",
        f"--annotation=requested-by=action on {APP}/0",
        "--backup-standby",
        "backup",
    ]
    assert listed == [*PGBACKREST, "--output=json", *INFO_PROBE, "info"]
    assert peer_app_data(out).backup_succeeded == {kind: stop.isoformat()}
    assert ctx.action_logs == [f"taking a {kind} backup"]


def test_create_backup_defaults_to_full(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    label = new_label("full")
    ctx.run(
        ctx.on.action("create-backup"),
        backup_state(image, execs=[backup(), after_backup(label, "full")]),
    )
    assert ctx.action_results is not None and ctx.action_results["type"] == "full"


@pytest.mark.parametrize(
    "members",
    [
        [("leader", "running")],
        [("leader", "running"), ("replica", "starting"), ("replica", "stopped")],
    ],
    ids=["alone", "no-healthy-standby"],
)
def test_create_backup_without_a_healthy_standby_reads_the_primary(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, members: list[tuple[str, str]]
):
    for i, (role, st) in enumerate(members):
        patroni.add_member(f"{APP}-{i}", role, st)
    label = new_label("full")
    state = backup_state(image, units=len(members), execs=[backup(), after_backup(label, "full")])
    ctx.run(ctx.on.action("create-backup", params={"type": "full"}), state)
    taken = pgbackrest_commands(ctx)[0]
    assert taken[-2:] == ["--no-backup-standby", "backup"]
    assert "--backup-standby" not in taken


def test_create_backup_on_a_non_leader_works_but_records_nothing(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    label = new_label("full")
    state = backup_state(image, leader=False, execs=[backup(), after_backup(label, "full")])
    out = ctx.run(ctx.on.action("create-backup", params={"type": "full"}), state)
    assert ctx.action_results is not None and ctx.action_results["backup-id"] == label
    assert peer_app_data(out).backup_succeeded == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"s3": None, "stanza": False},
            "no S3 repository: integrate with an s3-parameters provider first",
        ),
        (
            {"s3": {"endpoint": "http://s3.example.com"}, "stanza": False},
            "s3-parameters: endpoint: pgBackRest reaches S3 over https:// only",
        ),
        ({"s3": "unanswered", "stanza": False}, "the S3 repository is not ready yet"),
        ({"stanza": False}, "the S3 repository is not ready yet"),
        (
            {
                "stanza": False,
                "app_data": {
                    "backup-error": "S3 repository refused: bucket: the bucket does not exist"
                },
            },
            "S3 repository refused: bucket: the bucket does not exist",
        ),
        ({"app_data": {"restore": restore_data("stopping")}}, "a restore is in progress"),
    ],
    ids=[
        "not-related",
        "invalid-settings",
        "unanswered",
        "no-stanza",
        "stanza-refused",
        "restoring",
    ],
)
def test_create_backup_refused_until_the_repository_is_ready(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, kwargs: dict[str, Any], message: str
):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False, execs=[backup(), info()], **kwargs)
    assert run_failing(ctx, "create-backup", state, type="full") == message
    assert not pgbackrest_commands(ctx)


def test_create_backup_failure_names_the_s3_setting(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[backup(return_code=39, stderr=NO_SUCH_BUCKET), info()])
    message = run_failing(ctx, "create-backup", state, type="full")
    assert message == "backup failed: bucket: the bucket does not exist"


def test_create_backup_failure_records_no_success(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(
        image,
        execs=[backup(return_code=50, stderr="ERROR: [050]: unable to acquire lock on file")],
    )
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("create-backup", params={"type": "full"}), state)
    assert failed.value.message == "backup failed: another pgBackRest command is running"
    assert peer_app_data(failed.value.state).backup_succeeded == {}


def test_create_backup_the_repository_does_not_list(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[backup(), info(stdout=info_json())])
    message = run_failing(ctx, "create-backup", state, type="full")
    assert message == "backup failed: the backup finished but the repository does not list it"


def exec_raising_timeout_error() -> Any:
    """Container.exec where pgBackRest's commands raise ops.pebble.TimeoutError."""
    original = ops.Container.exec

    def slow(self: ops.Container, command: list[str], **kwargs: Any) -> Any:
        if command[0] == "pgbackrest":
            raise ops.pebble.TimeoutError("timed out")
        return original(self, command, **kwargs)

    return slow


# Pebble's exec timeout fails the exec change (ChangeError); a client-side wait, TimeoutError.
NEVER_FINISHES = pytest.mark.parametrize(
    "patched_exec",
    [exec_raising_timeout_error, exec_timing_out_for_pgbackrest],
    ids=["timeout-error", "change-error"],
)


@NEVER_FINISHES
def test_create_backup_that_never_finishes(
    ctx: Ctx,
    image: Mounts,
    patroni: FakePatroni,
    monkeypatch: pytest.MonkeyPatch,
    patched_exec: Any,
):
    healthy_cluster(patroni)
    monkeypatch.setattr(ops.Container, "exec", patched_exec())
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("create-backup", params={"type": "full"}), backup_state(image))
    assert failed.value.message == "backup failed: backup did not finish within 3600 s"
    assert peer_app_data(failed.value.state).backup_succeeded == {}


def test_create_backup_whose_command_cannot_run_says_so(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, monkeypatch: pytest.MonkeyPatch
):
    """A change error other than the timeout is reported as it is, not as a timeout."""
    healthy_cluster(patroni)
    err = 'cannot perform the following tasks:\n- exec (cannot find executable "pgbackrest")'
    monkeypatch.setattr(ops.Container, "exec", exec_timing_out_for_pgbackrest(err))
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("create-backup", params={"type": "full"}), backup_state(image))
    assert failed.value.message == (
        "backup failed: backup could not run: cannot perform the following tasks:"
        ' - exec (cannot find executable "pgbackrest")'
    )
    assert peer_app_data(failed.value.state).backup_succeeded == {}


@NEVER_FINISHES
def test_list_backups_that_never_finishes(
    ctx: Ctx,
    image: Mounts,
    patroni: FakePatroni,
    monkeypatch: pytest.MonkeyPatch,
    patched_exec: Any,
):
    healthy_cluster(patroni)
    monkeypatch.setattr(ops.Container, "exec", patched_exec())
    message = run_failing(ctx, "list-backups", backup_state(image, leader=False))
    assert message == "cannot list backups: info did not finish within 120 s"


# -- list-backups ------------------------------------------------------------------------------


def test_list_backups_shows_the_repository(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    ctx.run(ctx.on.action("list-backups"), backup_state(image, leader=False, execs=[info()]))
    results = ctx.action_results or {}
    assert results["count"] == "2"
    header, *rows = results["backups"].splitlines()
    assert header.split()[:3] == ["backup-id", "type", "status"]
    assert [r.split()[:3] for r in rows] == [[FULL, "full", "ok"], [INCR, "incr", "ok"]]
    assert f"{FIRST_STOP:%Y-%m-%d %H:%M:%S}" in rows[0]
    assert "22.0MiB" in rows[0]
    assert pgbackrest_commands(ctx) == [[*PGBACKREST, "--output=json", *INFO_PROBE, "info"]]


def test_list_backups_fails_fast(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    # An unreachable endpoint must not hold the action for pgBackRest's default minutes; info
    # reaches no database, and pgBackRest refuses a --db-timeout for it.
    healthy_cluster(patroni)
    ctx.run(ctx.on.action("list-backups"), backup_state(image, leader=False, execs=[info()]))
    [listed] = pgbackrest_commands(ctx)
    assert listed[-3:] == ["--io-timeout=15", "--protocol-timeout=30", "info"]
    assert not [o for o in listed if o.startswith("--db-timeout")]


def test_list_backups_of_an_empty_repository(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    ctx.run(ctx.on.action("list-backups"), backup_state(image, execs=[info(stdout=info_json())]))
    results = ctx.action_results or {}
    assert results["count"] == "0"
    assert (
        results["backups"].split()[0] == "backup-id" and len(results["backups"].splitlines()) == 1
    )


def test_list_backups_failure_names_the_setting(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[info(return_code=39, stderr=HTTP_403)])
    message = run_failing(ctx, "list-backups", state)
    assert (
        message
        == "cannot list backups: access-key/secret-key: the S3 server refused these credentials"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"s3": None, "stanza": False},
            "no S3 repository: integrate with an s3-parameters provider first",
        ),
        (
            {"s3": {"region": "eu west"}, "stanza": False},
            "s3-parameters: region: not a region name: 'eu west'",
        ),
        ({"stanza": False}, "the S3 repository is not ready yet"),
    ],
    ids=["not-related", "invalid-settings", "no-stanza"],
)
def test_list_backups_refused_until_the_repository_is_ready(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, kwargs: dict[str, Any], message: str
):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False, execs=[info()], **kwargs)
    assert run_failing(ctx, "list-backups", state) == message
    assert not pgbackrest_commands(ctx)


# -- restore -----------------------------------------------------------------------------------


def test_restore_of_a_backup_starts_by_stopping_every_member(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    before = configured(ctx, image, patroni, execs=[*WORKLOAD_EXECS, info()])
    out = ctx.run(ctx.on.action("restore", params={"backup-id": FULL}), before)
    results = ctx.action_results or {}
    assert results["message"] == "restore started: follow `juju status`"
    r = peer_app_data(out).restore
    assert r is not None
    assert (r.id, r.backup_id, r.target_time, r.phase) == (
        results["restore-id"],
        FULL,
        None,
        "stopping",
    )
    assert len(r.id) == 8 and int(r.id, 16) >= 0
    started = datetime.datetime.fromisoformat(r.started)
    assert abs(started - datetime.datetime.now(UTC)) < datetime.timedelta(minutes=1)
    # The leader is the primary here: it stops last, once the others said they stopped.
    assert out.get_container(layout.CONTAINER).service_statuses[layout.SERVICE_POSTGRESQL] == (
        ops.pebble.ServiceStatus.ACTIVE
    )
    assert restore.STOPPED_KEY not in peer_unit_data(out)
    assert out.unit_status == ops.MaintenanceStatus(f"restore {r.id}: stopping every member")


def test_restore_of_the_latest_state(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    out = ctx.run(
        ctx.on.action("restore", params={"latest": True}), backup_state(image, execs=[info()])
    )
    r = peer_app_data(out).restore
    assert r is not None and (r.backup_id, r.target_time) == (None, None)


@pytest.mark.parametrize(
    ("given", "offset"),
    [
        ("{:%Y-%m-%dT%H:%M:%S}Z", datetime.timedelta(0)),
        ("{:%Y-%m-%dT%H:%M:%S}", datetime.timedelta(0)),  # no zone: UTC
        ("{:%Y-%m-%d %H:%M:%S}+00:00", datetime.timedelta(0)),
    ],
    ids=["z", "naive", "space"],
)
def test_restore_to_a_point_in_time(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, given: str, offset: datetime.timedelta
):
    healthy_cluster(patroni)
    moment = NOW - datetime.timedelta(hours=3)
    params = {"restore-to-time": given.format(moment)}
    out = ctx.run(ctx.on.action("restore", params=params), backup_state(image, execs=[info()]))
    r = peer_app_data(out).restore
    assert r is not None and r.backup_id is None
    assert r.target_time is not None
    assert datetime.datetime.fromisoformat(r.target_time) == moment
    assert datetime.datetime.fromisoformat(r.target_time).utcoffset() == offset


def test_restore_to_a_time_with_another_zone_keeps_the_moment(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    moment = (NOW - datetime.timedelta(hours=3)).astimezone(
        datetime.timezone(datetime.timedelta(hours=2))
    )
    params = {"restore-to-time": moment.isoformat()}
    out = ctx.run(ctx.on.action("restore", params=params), backup_state(image, execs=[info()]))
    r = peer_app_data(out).restore
    assert r is not None and r.target_time is not None
    assert datetime.datetime.fromisoformat(r.target_time) == moment


def _too_early() -> str:
    return (FIRST_STOP - datetime.timedelta(minutes=1)).isoformat()


def _future() -> str:
    return (datetime.datetime.now(UTC) + datetime.timedelta(hours=1)).isoformat()


BETWEEN = (
    f"restore-to-time must be between the first backup's end ({FIRST_STOP.isoformat()}) and now"
)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "give exactly one of backup-id, restore-to-time or latest=true"),
        (
            {"backup-id": FULL, "latest": True},
            "give exactly one of backup-id, restore-to-time or latest=true",
        ),
        (
            {"backup-id": FULL, "restore-to-time": "2026-11-25T00:00:00Z"},
            "give exactly one of backup-id, restore-to-time or latest=true",
        ),
        ({"backup-id": "20260101-000000F"}, "no backup '20260101-000000F': run list-backups"),
        ({"restore-to-time": _too_early()}, BETWEEN),
        ({"restore-to-time": _future()}, BETWEEN),
        (
            {"restore-to-time": "yesterday"},
            "restore-to-time 'yesterday' is not a time: use ISO 8601, e.g. 2026-11-26T10:15:00Z",
        ),
    ],
    ids=[
        "none",
        "id-and-latest",
        "id-and-time",
        "unknown-id",
        "before-first-backup",
        "future",
        "not-a-time",
    ],
)
def test_restore_with_bad_parameters_fails_and_changes_nothing(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, params: dict[str, Any], message: str
):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[info()])
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("restore", params=params), state)
    assert failed.value.message == message
    assert peer_app_data(failed.value.state).restore is None


def test_restore_from_an_empty_repository(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[info(stdout=info_json())])
    assert (
        run_failing(ctx, "restore", state, latest=True)
        == "the repository holds no backup to restore"
    )


def test_restore_without_a_stanza_in_the_repository(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[info(stdout="[]")])
    assert (
        run_failing(ctx, "restore", state, latest=True)
        == "the repository has no stanza for this cluster"
    )


def test_restore_when_the_repository_cannot_be_read(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[info(return_code=39, stderr=NO_SUCH_BUCKET)])
    message = run_failing(ctx, "restore", state, latest=True)
    assert message == "cannot read the repository: bucket: the bucket does not exist"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leader": False}, "restore must run on the leader unit"),
        (
            {"s3": None, "stanza": False},
            "no S3 repository: integrate with an s3-parameters provider first",
        ),
        ({"s3": {"bucket": "a"}, "stanza": False}, None),
        ({"stanza": False}, "the S3 repository is not ready yet"),
        (
            {"app_data": {"restore": restore_data("replicas", restorer=f"{APP}-0")}},
            "a restore is in progress",
        ),
    ],
    ids=["not-leader", "not-related", "invalid-settings", "no-stanza", "restoring"],
)
def test_restore_refused(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, kwargs: dict[str, Any], message: str | None
):
    healthy_cluster(patroni)
    state = backup_state(image, execs=[info()], **kwargs)
    failure = run_failing(ctx, "restore", state, latest=True)
    if message is None:
        assert failure.startswith("s3-parameters: bucket: ")
    else:
        assert failure == message
    assert not pgbackrest_commands(ctx)


def test_a_new_restore_can_follow_a_failed_one(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    failed = restore_data("failed", restorer=f"{APP}-0", message="recovery did not finish")
    state = backup_state(image, execs=[info()], app_data={"restore": failed})
    out = ctx.run(ctx.on.action("restore", params={"backup-id": FULL}), state)
    r = peer_app_data(out).restore
    assert r is not None and (r.phase, r.backup_id) == ("stopping", FULL)
    assert r.id != failed["id"]  # every unit acknowledges the new attempt afresh
    assert (ctx.action_results or {})["restore-id"] == r.id
    assert out.unit_status == ops.MaintenanceStatus(f"restore {r.id}: stopping every member")


def test_backups_and_restores_go_on_after_an_abandoned_restore(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    abandoned = restore_data("abandoned", message=f"{APP}/2 did not stop PostgreSQL in 10 min")
    label = new_label("full")
    state = backup_state(
        image, execs=[backup(), after_backup(label, "full")], app_data={"restore": abandoned}
    )
    ctx.run(ctx.on.action("create-backup", params={"type": "full"}), state)
    assert (ctx.action_results or {})["backup-id"] == label
    out = ctx.run(ctx.on.action("restore", params={"backup-id": FULL}), state)
    r = peer_app_data(out).restore
    assert r is not None and r.phase == "stopping" and r.id != abandoned["id"]


def test_create_backup_refused_after_a_failed_restore(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    patroni.reachable = False  # in `failed`, every unit keeps PostgreSQL stopped
    failed = restore_data("failed", restorer=f"{APP}-0", message="recovery did not finish")
    state = backup_state(
        image,
        execs=[
            backup(return_code=56, stderr="ERROR: [056]: unable to find primary cluster"),
            info(),
        ],
        app_data={"restore": failed},
    )
    with pytest.raises(testing.ActionFailed) as refused:
        ctx.run(ctx.on.action("create-backup", params={"type": "full"}), state)
    assert not pgbackrest_commands(ctx)
    assert "restore" in refused.value.message


def test_restore_target_checks_against_the_repository():
    [stanza] = pgbackrest.parse_info(TWO_BACKUPS)
    target = backup_actions.restore_target
    assert target({"backup-id": INCR}, stanza) == {"backup-id": INCR}
    assert target({"latest": True}, stanza) == {}
    at = FIRST_STOP + datetime.timedelta(seconds=1)
    assert target({"restore-to-time": at.isoformat()}, stanza) == {"target-time": at.isoformat()}
    # The first backup's end is the earliest consistent point.
    assert target({"restore-to-time": FIRST_STOP.isoformat()}, stanza) == {
        "target-time": FIRST_STOP.isoformat()
    }
    with pytest.raises(ValueError, match="exactly one"):
        target({"backup-id": "", "restore-to-time": "", "latest": False}, stanza)
    # Up to the last WAL the repository holds, not beyond.
    reach = FIRST_STOP + datetime.timedelta(minutes=5)
    assert target({"restore-to-time": reach.isoformat()}, stanza, reach)
    with pytest.raises(ValueError, match="after the last WAL the repository holds"):
        later = reach + datetime.timedelta(seconds=1)
        target({"restore-to-time": later.isoformat()}, stanza, reach)


def test_restore_beyond_the_archive_fails_fast_and_changes_nothing(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    database.archived_at = NOW - datetime.timedelta(hours=3)
    beyond = NOW - datetime.timedelta(hours=1)  # after the backups, before now, not archived
    state = backup_state(image, execs=[info()])
    message = run_failing(ctx, "restore", state, **{"restore-to-time": beyond.isoformat()})
    assert "after the last WAL the repository holds" in message
    assert database.archived_at.isoformat() in message


# -- the scheduler's notices -------------------------------------------------------------------


def due(
    kind: str, at: str = "2026-11-26T02:00:00+00:00", key: str = scheduler.NOTICE
) -> testing.Notice:
    return testing.Notice(key=key, last_data={"kind": kind, "at": at})


def notify(ctx: Ctx, state: testing.State) -> testing.State:
    ctr = state.get_container(layout.CONTAINER)
    return ctx.run(ctx.on.pebble_custom_notice(ctr, ctr.notices[0]), state)


@pytest.mark.parametrize(
    ("kind", "incremental_type", "pgbackrest_type"),
    [("full", "incr", "full"), ("incremental", "incr", "incr"), ("incremental", "diff", "diff")],
)
def test_scheduled_backup_on_the_leader(
    ctx: Ctx,
    image: Mounts,
    patroni: FakePatroni,
    kind: str,
    incremental_type: str,
    pgbackrest_type: str,
):
    healthy_cluster(patroni)
    label = new_label(pgbackrest_type)
    state = backup_state(
        image,
        config={"backup-schedule-full": "0 2 * * 0", "backup-incremental-type": incremental_type},
        execs=[backup(pgbackrest_type), after_backup(label, pgbackrest_type)],
        notices=[due(kind)],
    )
    out = notify(ctx, state)
    taken = pgbackrest_commands(ctx)[0]
    assert taken == [
        *PGBACKREST,
        f"--type={pgbackrest_type}",
        "--annotation=requested-by=schedule",
        "--backup-standby",
        "backup",
    ]
    data = peer_app_data(out)
    assert data.backup_fired == {kind: "2026-11-26T02:00:00+00:00"}
    stop = datetime.datetime.fromtimestamp(int(NOW.timestamp()) - 5, UTC)
    assert data.backup_succeeded == {kind: stop.isoformat()}


def test_scheduled_time_is_recorded_in_utc(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(
        image,
        stanza=False,
        execs=[
            testing.Exec([*PGBACKREST, *PROBE, "stanza-create"], return_code=39, stderr=HTTP_403)
        ],
        notices=[due("full", at="2026-11-26T04:00:00+02:00")],
    )
    out = notify(ctx, state)
    assert peer_app_data(out).backup_fired == {"full": "2026-11-26T02:00:00+00:00"}
    # Not ready: the schedule fired, nothing was taken (status reports the miss later).
    assert [c[-1] for c in pgbackrest_commands(ctx)] == ["stanza-create"]
    assert peer_app_data(out).backup_succeeded == {}


def test_scheduled_backup_failing_is_recorded_as_fired_only(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = backup_state(
        image, execs=[backup(return_code=39, stderr=NO_SUCH_BUCKET)], notices=[due("full")]
    )
    out = notify(ctx, state)
    assert peer_app_data(out).backup_fired == {"full": "2026-11-26T02:00:00+00:00"}
    assert peer_app_data(out).backup_succeeded == {}
    assert out.unit_status == ops.ActiveStatus("primary")


def test_scheduler_notice_ignored_on_a_non_leader(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = backup_state(image, leader=False, execs=[backup(), info()], notices=[due("full")])
    out = notify(ctx, state)
    assert not pgbackrest_commands(ctx)
    assert peer_app_data(out).backup_fired == {}


@pytest.mark.parametrize(
    "notice",
    [
        due("weekly"),
        due("full", at="not a time"),
        due("full", at="2026-11-26T02:00:00"),  # no zone
        due("full", key=layout.ROLE_CHANGE_NOTICE),
    ],
    ids=["unknown-kind", "bad-time", "naive-time", "another-notice"],
)
def test_other_or_malformed_notices_take_no_backup(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, notice: testing.Notice
):
    healthy_cluster(patroni)
    out = notify(ctx, backup_state(image, execs=[backup(), info()], notices=[notice]))
    assert not pgbackrest_commands(ctx)
    assert peer_app_data(out).backup_fired == {}


def test_scheduled_backup_skipped_during_a_restore(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    before = configured(ctx, image, patroni, execs=[*WORKLOAD_EXECS, backup(), info()])
    ctr = before.get_container(layout.CONTAINER)
    with_notice = dataclasses.replace(
        before, containers=[dataclasses.replace(ctr, notices=[due("full")])]
    )
    state = during(with_notice, restore_data("stopping"))
    out = notify(ctx, state)
    assert not pgbackrest_commands(ctx)
    assert peer_app_data(out).backup_fired == {"full": "2026-11-26T02:00:00+00:00"}


def test_backup_succeeded_survives_as_json(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    # Other units read the leader's record from the peer data: it is plain JSON there.
    healthy_cluster(patroni)
    label = new_label("full")
    out = ctx.run(
        ctx.on.action("create-backup", params={"type": "full"}),
        backup_state(image, execs=[backup(), after_backup(label, "full")]),
    )
    raw = out.get_relations("database-peers")[0].local_app_data["backup-succeeded"]
    assert set(json.loads(raw)) == {"full"}
