"""State-transition tests of the charm's reconcile and status, with ops.testing."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
from typing import Any

import ops
import pytest
from ops import testing

import charm
from components import system_users
from tests.unit.builders import (
    APP,
    Ctx,
    FakeDatabase,
    FakeKubernetes,
    FakePatroni,
    container,
    deployed,
    healthy_cluster,
    patroni_yml,
    peers,
    system_secret,
)
from workload import layout


def conf_path(ctx: Ctx, out: testing.State, path: str) -> Any:
    return out.get_container(layout.CONTAINER).get_filesystem(ctx) / path.lstrip("/")


# -- first deploy ------------------------------------------------------------------------------


def test_first_deploy_leader_creates_secret_and_starts_patroni(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    patroni.reachable = False
    state = testing.State(
        leader=True, containers=[container(image)], relations=[peers(None)], planned_units=3
    )
    out = ctx.run(ctx.on.install(), state)

    secret = out.get_secret(label=system_users.SECRET_LABEL)
    content = secret.latest_content or {}
    assert set(content) == {u.secret_key for u in layout.SystemUser}
    assert all(len(v) == system_users.PASSWORD_LENGTH for v in content.values())
    relation = next(iter(out.relations))
    assert json.loads(relation.local_app_data["system-users-secret"]) == secret.id

    conf = patroni_yml(ctx, out)
    assert conf["name"] == f"{APP}-0"
    assert conf["scope"] == APP
    assert conf["postgresql"]["bin_dir"] == "/usr/lib/postgresql/16/bin"
    assert (
        conf["postgresql"]["authentication"]["superuser"]["password"]
        == content["operator-password"]
    )
    assert conf["bootstrap"]["dcs"]["synchronous_node_count"] == 2  # "all" of 3 units
    assert conf_path(ctx, out, layout.PATRONI_CONF).stat().st_mode & 0o777 == 0o600

    plan = out.get_container(layout.CONTAINER).plan.to_dict()
    service = plan["services"][layout.SERVICE_POSTGRESQL]
    assert service["command"] == f"patroni {layout.PATRONI_CONF}"
    assert service["user"] == "postgres"
    assert service["environment"]["PATRONI_KUBERNETES_NAMESPACE"]
    assert all(p not in json.dumps(plan) for p in content.values())
    assert out.unit_status == ops.MaintenanceStatus("starting PostgreSQL")


def test_first_deploy_non_leader_waits_for_the_secret(ctx: Ctx, image: dict[str, testing.Mount]):
    state = testing.State(containers=[container(image)], relations=[peers(None)], planned_units=3)
    out = ctx.run(ctx.on.install(), state)
    assert out.unit_status == ops.WaitingStatus(
        "waiting for the leader to create the system users"
    )
    assert not conf_path(ctx, out, layout.PATRONI_CONF).exists()
    assert not out.get_container(layout.CONTAINER).plan.services


def test_pebble_ready_after_secret_configures_non_leader(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = deployed(image, leader=False)
    ctr = state.get_container(layout.CONTAINER)
    out = ctx.run(ctx.on.pebble_ready(ctr), state)
    assert patroni_yml(ctx, out)["postgresql"]["connect_address"].endswith(":5432")
    assert layout.SERVICE_POSTGRESQL in out.get_container(layout.CONTAINER).plan.services
    assert not patroni.writes()  # a non-leader never changes the cluster
    assert out.unit_status == ops.ActiveStatus("primary")  # this unit is member 0, the leader


def test_pebble_ready_before_secret_does_nothing(ctx: Ctx, image: dict[str, testing.Mount]):
    state = testing.State(containers=[container(image)], relations=[peers(None)])
    ctr = state.get_container(layout.CONTAINER)
    out = ctx.run(ctx.on.pebble_ready(ctr), state)
    assert not out.get_container(layout.CONTAINER).plan.services
    assert out.unit_status.name == "waiting"


# -- idempotence and the cluster -----------------------------------------------------------------


def test_second_run_writes_nothing(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    patroni: FakePatroni,
    monkeypatch: pytest.MonkeyPatch,
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), deployed(image))
    assert patroni.writes("PATCH")
    pushes: list[str] = []
    replans: list[int] = []
    original_push = ops.Container.push
    monkeypatch.setattr(
        ops.Container,
        "push",
        lambda self, path, *a, **k: (pushes.append(path), original_push(self, path, *a, **k))[1],
    )
    monkeypatch.setattr(ops.Container, "replan", lambda self: replans.append(1))
    patroni.calls.clear()
    ctx.run(ctx.on.update_status(), out)
    assert pushes == []
    assert replans == []
    assert patroni.writes() == []


def test_leader_patches_dynamic_config_and_creates_system_roles(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    ctx.run(ctx.on.config_changed(), deployed(image, config={"memory-work-mem": 8192}))
    assert patroni.config["synchronous_mode"] is True
    assert patroni.config["synchronous_node_count"] == 2
    assert patroni.config["postgresql"]["parameters"]["work_mem"] == "8192"
    assert patroni.config["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"
    assert set(database.passwords) == {"monitoring", "backup"}
    assert database.attributes["backup"]["in_roles"] == ("pg_read_all_settings", "pg_checkpoint")
    assert database.granted_functions == list(system_users.BACKUP_FUNCTIONS)
    # Roles are managed on the primary (the unit's own member is only swept, see clients).
    managed_on = [h for h in database.hosts if h not in database.swept]
    assert managed_on[0] == patroni.member(f"{APP}-0")["host"]


def test_unset_parameter_is_removed_from_dcs(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), deployed(image, config={"memory-work-mem": 8192}))
    state = dataclass_replace(out, config={})
    ctx.run(ctx.on.config_changed(), state)
    assert "work_mem" not in patroni.config["postgresql"]["parameters"]


def dataclass_replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


def test_config_change_needing_restart_rolls_replicas_first(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    for m in patroni.members:
        m["pending_restart"] = True
    ctx.run(ctx.on.config_changed(), deployed(image, config={"connection-max-connections": 200}))
    restarts = [c for c in patroni.calls if c[1] == "/restart"]
    assert len(restarts) == 3
    assert patroni.config["postgresql"]["parameters"]["max_connections"] == "200"
    assert not any(m.get("pending_restart") for m in patroni.members)


def test_restart_waits_while_cluster_unhealthy(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    patroni.members[2]["state"] = "starting"
    patroni.members[1]["pending_restart"] = True
    ctx.run(ctx.on.update_status(), deployed(image))
    assert not [c for c in patroni.calls if c[1] == "/restart"]


def test_local_config_change_reloads_patroni_without_restart(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    patroni: FakePatroni,
    monkeypatch: pytest.MonkeyPatch,
):
    healthy_cluster(patroni)
    state = deployed(image, leader=False)
    out = ctx.run(ctx.on.config_changed(), state)
    ctr = dataclass_replace(
        out.get_container(layout.CONTAINER),
        service_statuses={layout.SERVICE_POSTGRESQL: ops.pebble.ServiceStatus.ACTIVE},
    )
    signals: list[tuple[str, tuple[str, ...]]] = []
    monkeypatch.setattr(
        ops.Container, "send_signal", lambda self, sig, *names: signals.append((sig, names))
    )
    replans: list[int] = []
    monkeypatch.setattr(ops.Container, "replan", lambda self: replans.append(1))
    # A new unit joins: patroni.yml's bootstrap node count changes, the layer does not.
    bigger = dataclass_replace(
        out,
        containers=[ctr],
        planned_units=4,
        relations=[peers(out.get_secret(label="system-users"), units=4)],
    )
    ctx.run(ctx.on.config_changed(), bigger)
    assert signals == [("SIGHUP", (layout.SERVICE_POSTGRESQL,))]
    assert replans == []


def test_scale_up_changes_synchronous_node_count(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    ctx.run(ctx.on.config_changed(), deployed(image, units=5))
    assert patroni.config["synchronous_node_count"] == 4
    ctx.run(
        ctx.on.config_changed(),
        deployed(image, units=2, config={"synchronous-node-count": "majority"}),
    )
    assert patroni.config["synchronous_node_count"] == 1


def test_invalid_config_blocks_and_changes_nothing(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(
        ctx.on.config_changed(),
        deployed(image, config={"durability-synchronous-commit": "sometimes"}),
    )
    assert out.unit_status.name == "blocked"
    assert "durability-synchronous-commit" in out.unit_status.message
    assert not conf_path(ctx, out, layout.PATRONI_CONF).exists()
    assert not patroni.writes()


def test_pebble_not_connectable(ctx: Ctx, image: dict[str, testing.Mount]):
    secret = system_secret()
    state = testing.State(
        leader=True,
        containers=[container(image, can_connect=False)],
        relations=[peers(secret)],
        secrets=[secret],
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == ops.MaintenanceStatus(
        "waiting for Pebble in the postgresql container"
    )


def test_patroni_unreachable(ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni):
    patroni.reachable = False
    out = ctx.run(ctx.on.update_status(), deployed(image))
    assert out.unit_status == ops.MaintenanceStatus("starting PostgreSQL")
    assert out.get_container(layout.CONTAINER).plan.services  # the unit is still configured


def test_missing_trust_blocks(ctx: Ctx, image: dict[str, testing.Mount], kube: FakeKubernetes):
    kube.missing = ["patch pods"]
    out = ctx.run(ctx.on.config_changed(), deployed(image))
    assert out.unit_status == ops.BlockedStatus(f"run `juju trust {APP} --scope=cluster`")
    assert not out.get_container(layout.CONTAINER).plan.services


def test_image_without_postgresql_blocks(ctx: Ctx, tmp_path: Any):
    (tmp_path / "empty").mkdir()
    empty = {"image": testing.Mount(location=layout.PG_BASE_DIR, source=tmp_path / "empty")}
    out = ctx.run(ctx.on.config_changed(), deployed(empty))
    assert out.unit_status.name == "blocked"
    assert "/usr/lib/postgresql" in out.unit_status.message


def test_leader_applies_services_and_labels_pod(
    ctx: Ctx, image: dict[str, testing.Mount], kube: FakeKubernetes, patroni: FakePatroni
):
    healthy_cluster(patroni)
    ctx.run(ctx.on.leader_elected(), deployed(image))
    assert kube.labelled == [f"{APP}-0"]
    assert kube.services_applied == 1


def test_new_leader_keeps_existing_secret(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = deployed(image)
    out = ctx.run(ctx.on.leader_elected(), state)
    assert [s.label for s in out.secrets] == ["system-users"]
    assert (
        out.get_secret(label="system-users").latest_content
        == state.get_secret(label="system-users").tracked_content
    )


@pytest.mark.parametrize(
    ("role", "state", "expected"),
    [
        ("leader", "running", ops.ActiveStatus("primary")),
        ("sync_standby", "streaming", ops.ActiveStatus("sync standby")),
        ("replica", "streaming", ops.ActiveStatus("replica")),
        ("replica", "creating_replica", ops.WaitingStatus("PostgreSQL creating replica")),
    ],
)
def test_unit_status_follows_patroni_role(
    ctx: Ctx,
    image: dict[str, testing.Mount],
    patroni: FakePatroni,
    role: str,
    state: str,
    expected: ops.StatusBase,
):
    patroni.add_member(f"{APP}-0", role, state)
    if role != "leader":
        patroni.add_member(f"{APP}-1", "leader")
    out = ctx.run(ctx.on.update_status(), deployed(image, leader=False))
    assert out.unit_status == expected


def test_pending_restart_shows_in_status(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    patroni.add_member(f"{APP}-0", "replica", pending_restart=True)
    patroni.add_member(f"{APP}-1", "leader")
    out = ctx.run(ctx.on.update_status(), deployed(image, leader=False))
    assert out.unit_status == ops.ActiveStatus("replica, restart pending")


def test_app_status_waits_without_primary(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    patroni.add_member(f"{APP}-0", "replica", "stopped")
    out = ctx.run(ctx.on.update_status(), deployed(image))
    assert out.app_status == ops.WaitingStatus("no primary: Patroni is electing one")


def test_role_change_notice_reconciles(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    notice = testing.Notice(key=layout.ROLE_CHANGE_NOTICE)
    state = deployed(image, leader=False)
    ctr = dataclass_replace(state.get_container(layout.CONTAINER), notices=[notice])
    state = dataclass_replace(state, containers=[ctr])
    out = ctx.run(ctx.on.pebble_custom_notice(ctr, notice), state)
    assert out.unit_status == ops.ActiveStatus("primary")


# -- stop: the departing primary hands over ---------------------------------------------------


def test_stop_as_primary_switches_over_to_sync_standby(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    ctx.run(ctx.on.stop(), deployed(image))
    assert (
        "POST",
        "/switchover",
        {"leader": f"{APP}-0", "candidate": f"{APP}-1"},
    ) in patroni.calls
    assert patroni.member(f"{APP}-1")["role"] == "leader"


def test_stop_as_replica_does_nothing(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni, leader=1, sync=0)
    ctx.run(ctx.on.stop(), deployed(image))
    assert not [c for c in patroni.calls if c[1] == "/switchover"]


def test_shared_buffers_beyond_container_memory_blocks(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni, tmp_path: Any
):
    healthy_cluster(patroni)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{1024**3}\n")  # 1 GiB container limit
    mounts = {**image, "cgroup": testing.Mount(location="/sys/fs/cgroup", source=cgroup)}
    out = ctx.run(ctx.on.config_changed(), deployed(mounts))
    assert out.unit_status == ops.ActiveStatus("primary")
    params = patroni.config["postgresql"]["parameters"]
    assert params["shared_buffers"] == "256MB"  # production profile: a quarter of the limit
    before = conf_path(ctx, out, layout.PATRONI_CONF).read_text()
    patroni.calls.clear()

    too_big = dataclass_replace(
        out, config={"memory-shared-buffers": 262144}
    )  # 2 GiB of 8kB pages
    out = ctx.run(ctx.on.config_changed(), too_big)
    assert out.unit_status.name == "blocked"
    assert "memory-shared-buffers" in out.unit_status.message
    assert conf_path(ctx, out, layout.PATRONI_CONF).read_text() == before
    assert not patroni.writes()


def test_root_owned_storage_is_handed_to_the_workload_user(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    (image["home"].source / "data").mkdir()  # the pgdata volume's mount point, owned by root
    state = deployed(image)
    ctx.run(ctx.on.pebble_ready(state.get_container(layout.CONTAINER)), state)
    commands = [e.command for e in ctx.exec_history[layout.CONTAINER]]
    # The test's files are root-owned, as a fresh Kubernetes volume is.
    assert ["chown", "postgres:postgres", layout.DATA_MOUNT] in commands
    assert ["chmod", "700", layout.DATA_MOUNT] in commands


def test_stop_on_scale_down_hands_over_to_a_staying_standby(
    image: dict[str, testing.Mount], patroni: FakePatroni, database: Any, kube: Any
):
    # Scaling 3 -> 1 removes units 2 and 1; the primary (unit 2) must not pick unit 1.
    healthy_cluster(patroni, leader=2, sync=1)
    patroni.member(f"{APP}-0")["role"] = "sync_standby"
    unit2 = testing.Context(charm.PostgresqlK8sCharm, unit_id=2)
    state = deployed(image, leader=False)
    relation = dataclass_replace(next(iter(state.relations)), peers_data={0: {}, 1: {}})
    state = dataclass_replace(state, relations=[relation], planned_units=1)
    unit2.run(unit2.on.stop(), state)
    assert (
        "POST",
        "/switchover",
        {"leader": f"{APP}-2", "candidate": f"{APP}-0"},
    ) in patroni.calls


def test_departing_primary_waits_for_a_staying_member_to_become_synchronous(
    image: dict[str, testing.Mount], patroni: FakePatroni, database: Any, kube: Any
):
    # Right after a switchover only a departing member (1) is synchronous; Patroni makes the
    # staying one (0) synchronous a loop later: the primary waits for it rather than leave.
    healthy_cluster(patroni, leader=2, sync=1)
    calls = {"n": 0}

    def later(p: FakePatroni) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            p.member(f"{APP}-0")["role"] = "sync_standby"

    patroni.on_cluster = later
    unit2 = testing.Context(charm.PostgresqlK8sCharm, unit_id=2)
    state = deployed(image, leader=False)
    relation = dataclass_replace(next(iter(state.relations)), peers_data={0: {}, 1: {}})
    unit2.run(unit2.on.stop(), dataclass_replace(state, relations=[relation], planned_units=1))
    assert (
        "POST",
        "/switchover",
        {"leader": f"{APP}-2", "candidate": f"{APP}-0"},
    ) in patroni.calls


def test_departing_primary_gives_up_when_no_staying_member_becomes_synchronous(
    image: dict[str, testing.Mount],
    patroni: FakePatroni,
    database: Any,
    kube: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(charm, "HANDOVER_TIMEOUT", 0.05)
    healthy_cluster(patroni, leader=2, sync=1)
    unit2 = testing.Context(charm.PostgresqlK8sCharm, unit_id=2)
    state = deployed(image, leader=False)
    relation = dataclass_replace(next(iter(state.relations)), peers_data={0: {}, 1: {}})
    unit2.run(unit2.on.stop(), dataclass_replace(state, relations=[relation], planned_units=1))
    assert not [c for c in patroni.calls if c[1] == "/switchover"]


def test_departing_member_tags_itself_out_of_the_synchronous_set(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni, leader=1, sync=2)
    out = ctx.run(ctx.on.config_changed(), deployed(image, leader=False))
    assert patroni_yml(ctx, out)["tags"]["nosync"] is False
    # Scaled to zero... of this unit's ordinal: unit 0 stays only while planned_units > 0.
    leaving = dataclass_replace(out, planned_units=0)
    out = ctx.run(ctx.on.config_changed(), leaving)
    tags = patroni_yml(ctx, out)["tags"]
    assert tags["nosync"] is True
    assert tags["nofailover"] is True


IMAGE_EXECS = {
    testing.Exec(["chown"]),
    testing.Exec(["chmod"]),
    testing.Exec(["find", "-L", "/usr/share/zoneinfo"], stdout="Europe/Paris\nUTC\nEtc/UTC\n"),
    testing.Exec(["locale", "-a"], stdout="C\nC.utf8\nPOSIX\n"),
    testing.Exec(["sh", "-c", "ulimit -s"], stdout="8192\n"),
}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("request-time-zone", "Europe/Nowhere"),  # PostgreSQL would read a fixed offset
        ("response-lc-monetary", "fr_FR.UTF-8"),  # not generated in this image
        ("memory-max-stack-depth", 8000),  # over the container's 8 MB stack less 512 kB
    ],
)
def test_a_value_the_image_refuses_blocks_and_changes_nothing(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni, option: str, value: Any
):
    healthy_cluster(patroni)
    state = deployed(image, config={option: value})
    state = dataclasses.replace(state, containers=[container(image, execs=IMAGE_EXECS)])
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status.name == "blocked"
    assert option in out.unit_status.message
    assert not conf_path(ctx, out, layout.PATRONI_CONF).exists()
    assert not patroni.writes()


def test_a_value_the_image_has_is_applied(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    state = deployed(image, config={"request-time-zone": "Europe/Paris"})
    state = dataclasses.replace(state, containers=[container(image, execs=IMAGE_EXECS)])
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status.name == "active"
    assert patroni.config["postgresql"]["parameters"]["TimeZone"] == "Europe/Paris"


def test_a_revision_no_unit_tracks_is_removed(ctx: Ctx, image: dict[str, testing.Mount]):
    # Old passwords (a rotation, a client gone) must not stay readable in Juju's store.
    state = deployed(image)
    secret = next(iter(state.secrets))
    # Rotated twice: every unit tracks revision 3 now (ops.testing keeps revisions private).
    for attribute in ("_latest_revision", "_tracked_revision"):
        object.__setattr__(secret, attribute, 3)
    ctx.run(ctx.on.secret_remove(secret, revision=2), state)
    assert ctx.removed_secret_revisions == [2]


def test_a_symlinked_directory_is_never_written_through(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni, tmp_path: Any
):
    # The workload user owns the home directory and could swap conf/ for a link to anywhere:
    # root chowning or writing through it would hand that place over.
    healthy_cluster(patroni)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = image["home"].source
    (home / "conf").symlink_to(elsewhere)
    postgres = pwd.getpwnam("postgres")
    os.lchown(home / "conf", postgres.pw_uid, postgres.pw_gid)
    out = ctx.run(ctx.on.config_changed(), deployed(image))
    assert out.unit_status == ops.BlockedStatus(
        f"{layout.CONF_DIR} is a symbolic link: replace it with a directory"
    )
    assert list(elsewhere.iterdir()) == []
    assert not patroni.writes()
