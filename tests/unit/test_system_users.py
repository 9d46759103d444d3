"""System users' passwords: generation, validation, the secret they live in, and its upkeep."""

from __future__ import annotations

import json
import string
from typing import Any

import ops
import pytest
from ops import testing

import state
from components import system_users
from tests.unit.builders import (
    FakePatroni,
    container,
    deployed,
    healthy_cluster,
    patroni_yml,
    peer_app_data,
    peers,
    system_secret,
)
from workload import layout

Ctx = testing.Context[Any]


def test_generated_password_has_the_configured_length_and_alphabet():
    password = system_users.generate_password()
    assert len(password) == system_users.PASSWORD_LENGTH == 32
    assert set(password) <= set(string.ascii_letters + string.digits)


def test_generated_passwords_are_distinct():
    passwords = {system_users.generate_password() for _ in range(50)}
    assert len(passwords) == 50


def test_generated_passwords_pass_validation():
    for _ in range(20):
        system_users.validate_password(system_users.generate_password())


@pytest.mark.parametrize(
    "password",
    [
        "abcdefgh",  # the minimum length
        "x" * 256,  # the maximum length
        "Tr0ub4dor&3!",
        "p@ss:w/rd;#%{}[]()<>?,.~^|=+-_*$",
    ],
)
def test_validate_password_accepts_safe_passwords(password: str):
    system_users.validate_password(password)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "must not be empty"),
        ("short", "8 to 256 characters"),
        ("abcdefg", "8 to 256 characters"),
        ("x" * 257, "8 to 256 characters"),
        ("with space", "whitespace"),
        ("with\ttab1", "whitespace"),
        ("new\nline1", "whitespace"),
        ("single'quote", "quotes"),
        ('double"quote', "quotes"),
        ("back`tick99", "quotes"),
        ("back\\slash", "backslash"),
        ("nul\x00char1", "letters, digits and punctuation"),
        ("pässwörter", "letters, digits and punctuation"),
        ("emoji🙂emoji", "letters, digits and punctuation"),
    ],
)
def test_validate_password_rejects_with_a_clear_message(password: str, message: str):
    with pytest.raises(system_users.InvalidPasswordError, match=message) as caught:
        system_users.validate_password(password)
    # A rejected password is never echoed back: the message goes to the action's output.
    if password:
        assert password not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_initial_content_has_one_fresh_password_per_user():
    content = system_users.initial_content()
    assert set(content) == {user.secret_key for user in layout.SystemUser}
    assert len(set(content.values())) == len(content)
    for password in content.values():
        system_users.validate_password(password)


def test_passwords_from_content_maps_keys_to_users():
    content = {user.secret_key: f"pw-{user.value}" for user in layout.SystemUser}
    passwords = state.passwords_from_content(content)
    assert passwords is not None
    assert passwords[layout.SystemUser.OPERATOR] == "pw-operator"
    assert passwords[layout.SystemUser.PATRONI] == "pw-patroni"
    assert set(passwords) == set(layout.SystemUser)


def test_passwords_from_content_ignores_unknown_keys():
    content = system_users.initial_content() | {"unrelated": "value"}
    passwords = state.passwords_from_content(content)
    assert passwords is not None
    assert len(passwords) == len(layout.SystemUser)


@pytest.mark.parametrize("user", list(layout.SystemUser))
def test_passwords_from_content_is_none_when_a_user_is_missing(user: layout.SystemUser):
    content = system_users.initial_content()
    del content[user.secret_key]
    assert state.passwords_from_content(content) is None


@pytest.mark.parametrize("user", list(layout.SystemUser))
def test_passwords_from_content_is_none_when_a_password_is_empty(user: layout.SystemUser):
    content = system_users.initial_content() | {user.secret_key: ""}
    assert state.passwords_from_content(content) is None


def test_passwords_from_empty_content_is_none():
    assert state.passwords_from_content({}) is None


def test_passwords_to_content_round_trip():
    content = system_users.initial_content()
    passwords = state.passwords_from_content(content)
    assert passwords is not None
    assert system_users.passwords_to_content(passwords) == content
    assert state.passwords_from_content(system_users.passwords_to_content(passwords)) == (
        passwords
    )


def test_passwords_to_content_uses_secret_keys():
    content = system_users.passwords_to_content({layout.SystemUser.REWIND: "rewind-secret"})
    assert content == {"rewind-password": "rewind-secret"}


# The secret as a hook reads it (the charm's own snapshot) and as the leader keeps it.


def read(ctx: Ctx, s: testing.State) -> state.Snapshot:
    """The snapshot the charm reads at the start of a hook on `s`."""
    with ctx(ctx.on.update_status(), s) as manager:
        snapshot = manager.charm.read()
        manager.run()
    return snapshot


def test_first_leader_creates_one_secret_with_fresh_passwords(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    patroni.reachable = False
    s = testing.State(
        leader=True, containers=[container(image)], relations=[peers(None)], planned_units=3
    )
    out = ctx.run(ctx.on.install(), s)
    (secret,) = out.secrets
    assert secret.label == "system-users"
    assert secret.owner == "app"
    content = secret.latest_content or {}
    assert state.passwords_from_content(content) is not None
    assert set(content) == {user.secret_key for user in layout.SystemUser}
    assert len(set(content.values())) == len(layout.SystemUser)
    for password in content.values():
        system_users.validate_password(password)
    assert peer_app_data(out).system_users_secret == secret.id


def test_read_by_the_id_in_the_peer_data(ctx: Ctx, image: dict[str, testing.Mount]):
    # Not labelled: only the id in the peer data finds it (what every unit but the creator does).
    content = system_users.initial_content()
    secret = testing.Secret(tracked_content=content, owner="app")
    s = testing.State(
        leader=False,
        containers=[container(image)],
        relations=[peers(secret)],
        secrets=[secret],
        planned_units=3,
    )
    snapshot = read(ctx, s)
    assert snapshot.users_secret == content
    assert snapshot.passwords == state.passwords_from_content(content)


def test_read_by_label_before_the_peer_data_holds_the_id(
    ctx: Ctx, image: dict[str, testing.Mount]
):
    secret = system_secret()
    s = testing.State(
        leader=True,
        containers=[container(image)],
        relations=[peers(None)],
        secrets=[secret],
        planned_units=3,
    )
    assert read(ctx, s).users_secret == secret.tracked_content


def test_read_sees_the_latest_revision(ctx: Ctx, image: dict[str, testing.Mount]):
    # After a rotation the leader bumps users-revision; the hook that follows must not read
    # the revision the unit tracked before.
    old = system_users.initial_content()
    new = old | {"operator-password": system_users.generate_password()}
    secret = testing.Secret(tracked_content=old, latest_content=new, owner="app")
    s = testing.State(
        leader=False,
        containers=[container(image)],
        relations=[peers(secret, **{"users-revision": 1})],
        secrets=[secret],
        planned_units=3,
    )
    assert read(ctx, s).users_secret == new


def test_read_incomplete_content_has_no_passwords(ctx: Ctx, image: dict[str, testing.Mount]):
    secret = testing.Secret(
        tracked_content={"operator-password": "only-one-password"}, owner="app"
    )
    s = testing.State(
        leader=False,
        containers=[container(image)],
        relations=[peers(secret)],
        secrets=[secret],
        planned_units=3,
    )
    snapshot = read(ctx, s)
    assert snapshot.users_secret == {"operator-password": "only-one-password"}
    assert snapshot.passwords is None
    assert snapshot.ready is None


@pytest.mark.parametrize("in_peer_data", [True, False])
def test_read_a_secret_that_is_not_there_is_none(
    ctx: Ctx, image: dict[str, testing.Mount], in_peer_data: bool
):
    gone = system_secret()  # known by id (or by nothing), but not in the model
    s = testing.State(
        leader=True,
        containers=[container(image)],
        relations=[peers(gone if in_peer_data else None)],
        planned_units=3,
    )
    snapshot = read(ctx, s)
    assert snapshot.users_secret is None
    assert snapshot.passwords is None


def test_leader_adds_a_user_the_secret_lacks(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    # A secret of the current revision made before the Patroni REST user existed.
    healthy_cluster(patroni)
    secret = system_secret()
    before = {k: v for k, v in secret.tracked_content.items() if k != "patroni-password"}
    secret = testing.Secret(tracked_content=before, owner="app", label=secret.label)
    s = testing.State(
        leader=True,
        containers=[container(image)],
        relations=[peers(secret, **{"users-revision": 4})],
        secrets=[secret],
        planned_units=3,
    )
    out = ctx.run(ctx.on.config_changed(), s)

    after = out.get_secret(label=system_users.SECRET_LABEL).latest_content or {}
    assert set(after) == {user.secret_key for user in layout.SystemUser}
    # The others are untouched: PostgreSQL still has them.
    assert {k: v for k, v in after.items() if k != "patroni-password"} == before
    added = after["patroni-password"]
    system_users.validate_password(added)
    assert added not in before.values()
    # Every unit re-reads the secret: units of the owning application get no secret-changed.
    assert peer_app_data(out).users_revision == 5
    assert peer_app_data(out).system_users_secret == secret.id
    # The leader configured itself with it in the same hook.
    auth = patroni_yml(ctx, out)["restapi"]["authentication"]
    assert auth == {"username": "patroni", "password": added}
    assert out.unit_status != ops.WaitingStatus(
        "waiting for the leader to create the system users"
    )


def test_a_complete_secret_is_left_alone(
    ctx: Ctx, image: dict[str, testing.Mount], patroni: FakePatroni
):
    healthy_cluster(patroni)
    s = deployed(image)
    out = ctx.run(ctx.on.config_changed(), s)
    secret = out.get_secret(label=system_users.SECRET_LABEL)
    assert secret.latest_content == s.get_secret(label=system_users.SECRET_LABEL).tracked_content
    bag = out.get_relations("database-peers")[0].local_app_data
    assert "users-revision" not in bag
    assert json.loads(bag["system-users-secret"]) == secret.id


def test_non_leader_waits_for_the_leader_to_add_a_missing_user(
    ctx: Ctx, image: dict[str, testing.Mount]
):
    secret = system_secret()
    before = {k: v for k, v in secret.tracked_content.items() if k != "patroni-password"}
    secret = testing.Secret(tracked_content=before, owner="app", label=secret.label)
    s = testing.State(
        leader=False,
        containers=[container(image)],
        relations=[peers(secret)],
        secrets=[secret],
        planned_units=3,
    )
    out = ctx.run(ctx.on.config_changed(), s)
    assert out.unit_status == ops.WaitingStatus(
        "waiting for the leader to create the system users"
    )
    assert out.get_secret(label=system_users.SECRET_LABEL).latest_content == before
    assert not out.get_container(layout.CONTAINER).plan.services
