"""State-transition tests of the actions: get-password, set-password, get-primary, promote-to-primary."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import yaml
from ops import testing

from actions import params as params_module
from actions import passwords
from tests.unit.builders import (
    APP,
    Ctx,
    FakeDatabase,
    FakePatroni,
    Mounts,
    container,
    deployed,
    healthy_cluster,
    peers,
    run_failing,
)
from workload import layout

# -- get-password ------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [u.value for u in layout.SystemUser])
def test_get_password_returns_the_secret_value(ctx: Ctx, image: Mounts, user: str):
    state = deployed(image, leader=False)
    ctx.run(ctx.on.action("get-password", params={"username": user}), state)
    content = state.get_secret(label="system-users").tracked_content
    assert ctx.action_results == {"password": content[f"{user}-password"]}


def test_get_password_defaults_to_operator(ctx: Ctx, image: Mounts):
    state = deployed(image)
    ctx.run(ctx.on.action("get-password"), state)
    assert ctx.action_results == {
        "password": state.get_secret(label="system-users").tracked_content["operator-password"]
    }


def test_get_password_before_secret_fails(ctx: Ctx, image: Mounts):
    state = testing.State(containers=[container(image)], relations=[peers(None)])
    assert "do not exist yet" in run_failing(ctx, "get-password", state)


def test_unknown_username_fails_the_action():
    # charmcraft.yaml's enum refuses it first on Juju; the charm refuses it on its own too.
    class Event:
        params: ClassVar[dict[str, str]] = {"username": "postgres"}
        messages: ClassVar[list[str]] = []

        def fail(self, message: str) -> None:
            self.messages.append(message)

    event = Event()
    assert passwords._user(event) is None  # type: ignore[arg-type]
    assert "invalid parameter username" in event.messages[0]
    assert "'operator'" in event.messages[0]


# -- set-password ------------------------------------------------------------------------------


def test_set_password_rotates_everywhere(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    state = deployed(image)
    out = ctx.run(
        ctx.on.action(
            "set-password", params={"username": "operator", "password": "n3w-Secret!pass"}
        ),
        state,
    )
    assert ctx.action_results == {"password": "n3w-Secret!pass"}
    assert database.passwords["operator"] == "n3w-Secret!pass"
    secret = out.get_secret(label="system-users")
    assert (secret.latest_content or {})["operator-password"] == "n3w-Secret!pass"
    peer = next(iter(out.relations))
    assert json.loads(peer.local_app_data["users-revision"]) == 1  # other units re-read the secret
    fs = out.get_container(layout.CONTAINER).get_filesystem(ctx)
    conf = yaml.safe_load((fs / layout.PATRONI_CONF.lstrip("/")).read_text())
    assert conf["postgresql"]["authentication"]["superuser"]["password"] == "n3w-Secret!pass"


def test_set_password_generates_one_when_omitted(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    ctx.run(ctx.on.action("set-password", params={"username": "replication"}), deployed(image))
    generated = ctx.action_results["password"]  # type: ignore[index]
    assert len(generated) == 32
    assert database.passwords["replication"] == generated


def test_set_password_of_rest_api_user_touches_no_database(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    out = ctx.run(
        ctx.on.action(
            "set-password", params={"username": "patroni", "password": "rest-api-Pass1"}
        ),
        deployed(image),
    )
    assert "patroni" not in database.passwords
    fs = out.get_container(layout.CONTAINER).get_filesystem(ctx)
    conf = yaml.safe_load((fs / layout.PATRONI_CONF.lstrip("/")).read_text())
    assert conf["restapi"]["authentication"]["password"] == "rest-api-Pass1"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "8 to 256"),
        ("has space inside", "may only contain"),
        ("quote'password", "may only contain"),
        ("back\\slash-pass", "may only contain"),
        ("x" * 300, "8 to 256"),
    ],
)
def test_set_password_invalid_fails_and_changes_nothing(
    ctx: Ctx,
    image: Mounts,
    patroni: FakePatroni,
    database: FakeDatabase,
    password: str,
    reason: str,
):
    healthy_cluster(patroni)
    state = deployed(image)
    message = run_failing(ctx, "set-password", state, username="operator", password=password)
    assert reason in message
    assert password not in message
    assert database.passwords == {}


def test_set_password_on_non_leader_fails(ctx: Ctx, image: Mounts, database: FakeDatabase):
    assert "leader" in run_failing(
        ctx,
        "set-password",
        deployed(image, leader=False),
        username="operator",
        password="GoodPassword1",
    )
    assert database.passwords == {}


def test_set_password_without_primary_fails_and_keeps_secret(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    patroni.reachable = False
    state = deployed(image)
    message = run_failing(
        ctx, "set-password", state, username="operator", password="GoodPassword1"
    )
    assert "no primary" in message


def test_set_password_database_error_fails(
    ctx: Ctx, image: Mounts, patroni: FakePatroni, database: FakeDatabase
):
    healthy_cluster(patroni)
    database.fail = True
    message = run_failing(
        ctx, "set-password", deployed(image), username="monitoring", password="GoodPassword1"
    )
    assert "cannot change the password" in message
    assert "GoodPassword1" not in message


# -- get-primary -------------------------------------------------------------------------------


def test_get_primary(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni, leader=2, sync=0)
    ctx.run(ctx.on.action("get-primary"), deployed(image, leader=False))
    assert ctx.action_results == {"primary": f"{APP}/2"}


def test_get_primary_without_leader_fails(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    patroni.add_member(f"{APP}-0", "replica", "stopped")
    assert "no primary" in run_failing(ctx, "get-primary", deployed(image))


# -- promote-to-primary ------------------------------------------------------------------------


def test_promote_sync_standby(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni, leader=1, sync=0)
    ctx.run(
        ctx.on.action("promote-to-primary", params={"scope": "unit"}),
        deployed(image, leader=False),
    )
    assert ctx.action_results == {"primary": f"{APP}/0"}
    assert patroni.member(f"{APP}-0")["role"] == "leader"


def test_promote_non_sync_replica_refused(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni, leader=1, sync=2)
    assert "synchronous standby" in run_failing(
        ctx, "promote-to-primary", deployed(image), scope="unit"
    )
    assert not patroni.writes()


def test_promote_primary_refused(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    assert "already the primary" in run_failing(
        ctx, "promote-to-primary", deployed(image), scope="unit"
    )


def test_promote_in_unhealthy_cluster_refused(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni, leader=1, sync=0)
    patroni.members[2]["state"] = "stopped"
    assert "healthy" in run_failing(ctx, "promote-to-primary", deployed(image), scope="unit")


def test_promote_refused_by_patroni(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni, leader=1, sync=0)
    patroni.refuse_switchover = True
    assert "412" in run_failing(ctx, "promote-to-primary", deployed(image), scope="unit")


def test_promote_without_patroni_fails(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    patroni.reachable = False
    assert "not reachable" in run_failing(ctx, "promote-to-primary", deployed(image), scope="unit")


# -- promote-to-primary force=true: a failover ------------------------------------------------


def test_forced_promotion_fails_over_when_the_primary_is_gone(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni, leader=1, sync=0)
    patroni.member(f"{APP}-1").update(state="stopped")  # its pod is gone
    ctx.run(
        ctx.on.action("promote-to-primary", params={"force": True}), deployed(image, leader=False)
    )
    assert ctx.action_results is not None
    assert ctx.action_results["primary"] == f"{APP}/0"
    assert "lost" in ctx.action_results["warning"]
    assert ("POST", "/failover", {"candidate": f"{APP}-0"}) in patroni.calls
    assert patroni.member(f"{APP}-0")["role"] == "leader"


def test_forced_promotion_refused_while_a_healthy_primary_exists(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni, leader=1, sync=0)
    message = run_failing(ctx, "promote-to-primary", deployed(image, leader=False), force=True)
    assert f"{APP}/1 is a healthy primary" in message
    assert "without force" in message
    assert not patroni.writes()


@pytest.mark.parametrize(
    ("action", "params", "where"),
    [
        ("promote-to-primary", {"scope": "cluster"}, "scope"),
        ("create-backup", {"type": "weekly"}, "type"),
        ("get-password", {"username": "postgres"}, "username"),
        ("set-password", {"username": "superuser"}, "username"),
        ("restore", {"backup-id": "x" * 65}, "backup-id"),
    ],
)
def test_bad_action_parameters_fail_the_action_and_change_nothing(
    ctx: Ctx,
    image: Mounts,
    patroni: FakePatroni,
    action: str,
    params: dict[str, object],
    where: str,
):
    healthy_cluster(patroni)
    message = run_failing(ctx, action, deployed(image), **params)
    assert message.startswith(f"invalid parameter {where}")
    assert not patroni.writes()


@pytest.mark.parametrize(
    ("model", "params", "where"),
    [
        # What Juju's schema refuses first; the charm refuses it on its own too.
        (params_module.PromoteParams, {"force": "yes"}, "force"),
        (params_module.BackupParams, {"type": 1}, "type"),
        (params_module.PasswordParams, {"password": 12345678}, "password"),
        (params_module.RestoreParams, {"latest": "true"}, "latest"),
        (params_module.RestoreParams, {"unknown": 1}, "unknown"),
    ],
)
def test_parameters_of_the_wrong_type_fail_the_action(
    model: type[params_module.pydantic.BaseModel], params: dict[str, object], where: str
):
    class Event:
        def __init__(self) -> None:
            self.params = params
            self.messages: list[str] = []

        def fail(self, message: str) -> None:
            self.messages.append(message)

    event = Event()
    assert params_module.parse(event, model) is None  # type: ignore[arg-type]
    assert event.messages[0].startswith(f"invalid parameter {where}")
