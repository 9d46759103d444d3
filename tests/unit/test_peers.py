"""The peer databags: typed as every released revision wrote them, written only when they change."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import ops
import pytest
from ops import testing

import peer_data
import peers
from peer_data import PeerAppData, RestoreState
from tests.unit.builders import APP, snapshot

UNIT = f"{APP}/0"


class PeersCharm(ops.CharmBase):
    """Nothing but the peer relation: the tests drive PeerWriter inside its hook."""


META = {"name": APP, "peers": {peer_data.RELATION: {"interface": "postgresql_peers"}}}


@dataclasses.dataclass
class Hook:
    """One running hook: the peer relation and a writer over it."""

    charm: ops.CharmBase
    relation: ops.Relation | None
    writer: peers.PeerWriter
    out: testing.State | None = None


@contextlib.contextmanager
def hook(
    app_data: dict[str, str] | None = None,
    unit_data: dict[str, str] | None = None,
    *,
    leader: bool = True,
    related: bool = True,
) -> Iterator[Hook]:
    """A hook of a unit whose peer databags hold `app_data` and `unit_data`; `out` after it."""
    ctx = testing.Context(PeersCharm, meta=META)
    relation = testing.PeerRelation(
        peer_data.RELATION,
        local_app_data=app_data or {},
        local_unit_data=unit_data or {},
        peers_data={1: {}, 2: {}},
    )
    state = testing.State(leader=leader, relations=[relation] if related else [])
    with ctx(ctx.on.update_status(), state) as manager:
        charm = manager.charm
        found = charm.model.get_relation(peer_data.RELATION)
        running = Hook(charm, found, peers.PeerWriter(found, charm.app, charm.unit))
        yield running
        running.out = manager.run()


def app_bag(out: testing.State | None) -> dict[str, str]:
    assert out is not None
    return dict(out.get_relations(peer_data.RELATION)[0].local_app_data)


def unit_bag(out: testing.State | None) -> dict[str, str]:
    assert out is not None
    return dict(out.get_relations(peer_data.RELATION)[0].local_unit_data)


# save()


def test_save_unchanged_returns_the_same_snapshot_and_writes_nothing():
    s = snapshot(peer_data=PeerAppData(users_revision=3, backup_stanza="abc"))
    # The databag differs from the snapshot on purpose: a write would show in it.
    with hook({"users-revision": "1"}) as h:
        after = h.writer.save(s, {"users_revision": 3, "backup_stanza": "abc"})
        assert after is s
        assert h.writer.save(s, {}) is s
    assert app_bag(h.out) == {"users-revision": "1"}


def test_save_unchanged_needs_no_leadership():
    # A non-leader may not write the application databag: an unchanged save does not try.
    s = snapshot(is_leader=False, peer_data=PeerAppData(backup_error="x"))
    with hook(leader=False) as h:
        assert h.writer.save(s, {"backup_error": "x"}) is s
    assert app_bag(h.out) == {}


def test_save_changed_writes_and_returns_a_new_snapshot():
    s = snapshot(peer_data=PeerAppData(users_revision=3))
    with hook({"users-revision": "3"}) as h:
        after = h.writer.save(s, {"users_revision": 4, "client_rules": [("db", "relation_id_4")]})
        # The snapshot the hook goes on with says what was written; the old one is untouched.
        assert after is not s
        assert after.peer_data.users_revision == 4
        assert after.peer_data.client_rules == [("db", "relation_id_4")]
        assert s.peer_data.users_revision == 3
        assert dataclasses.replace(after, peer_data=s.peer_data) == s
        # Every unit reads back what was written.
        assert peer_data.load(h.relation, h.charm.app) == after.peer_data
    bag = app_bag(h.out)
    assert json.loads(bag["users-revision"]) == 4
    assert json.loads(bag["client-rules"]) == [["db", "relation_id_4"]]


def test_save_without_the_peer_relation_changes_nothing():
    s = snapshot(peers_related=False)
    with hook(related=False) as h:
        assert h.relation is None
        assert h.writer.save(s, {"users_revision": 9}) is s


# ack()


def test_ack_writes_the_unit_databag_when_the_value_differs():
    s = snapshot(unit_data={UNIT: {"other": "kept"}, f"{APP}/1": {"k": "v"}})
    with hook(unit_data={"other": "kept"}) as h:
        after = h.writer.ack(s, "client-rules-digest", "abc")
        assert after is not s
        assert after.unit_data[UNIT] == {"other": "kept", "client-rules-digest": "abc"}
        assert after.unit_data[f"{APP}/1"] == {"k": "v"}
        assert after.own_data["client-rules-digest"] == "abc"
        assert s.own_data == {"other": "kept"}
        assert after.not_acked("client-rules-digest", "abc") == [f"{APP}/1"]
    assert unit_bag(h.out) == {"other": "kept", "client-rules-digest": "abc"}


def test_ack_of_the_value_already_there_writes_nothing():
    s = snapshot(unit_data={UNIT: {"client-rules-digest": "abc"}})
    # The databag differs from the snapshot on purpose: a write would show in it.
    with hook(unit_data={"client-rules-digest": "old"}) as h:
        assert h.writer.ack(s, "client-rules-digest", "abc") is s
    assert unit_bag(h.out) == {"client-rules-digest": "old"}


def test_ack_of_an_empty_value_equals_a_missing_key():
    s = snapshot(unit_data={UNIT: {}})
    with hook(unit_data={"marker": "1"}) as h:
        assert h.writer.ack(s, "pgbackrest-server", "") is s
    assert unit_bag(h.out) == {"marker": "1"}


def test_ack_of_an_empty_value_removes_the_key():
    s = snapshot(unit_data={UNIT: {"pgbackrest-server": "abc", "other": "kept"}})
    with hook(unit_data={"pgbackrest-server": "abc", "other": "kept"}) as h:
        after = h.writer.ack(s, "pgbackrest-server", "")
        assert after.own_data == {"other": "kept"}
    assert unit_bag(h.out) == {"other": "kept"}


def test_acks_in_a_row_each_see_the_last():
    s = snapshot(unit_data={UNIT: {}})
    with hook() as h:
        s = h.writer.ack(s, "a", "1")
        s = h.writer.ack(s, "b", "2")
        assert h.writer.ack(s, "a", "1") is s
        assert s.own_data == {"a": "1", "b": "2"}
    assert unit_bag(h.out) == {"a": "1", "b": "2"}


def test_ack_without_the_peer_relation_changes_nothing():
    s = snapshot(peers_related=False)
    with hook(related=False) as h:
        assert h.writer.ack(s, "a", "1") is s


# The databag's keys: flat, JSON values, as the released revision wrote them.

RESTORE = {
    "id": "restore-1",
    "backup-id": "20260101-000000F",
    "target-time": None,
    "phase": "restoring",
    "restorer": f"{APP}-0",
    "started": "2026-01-01T00:00:00+00:00",
    "message": "",
}
RELEASED: dict[str, Any] = {
    "system-users-secret": "secret://model/d0abc",
    "users-revision": 2,
    "client-rules": [["orders", "relation_id_7"]],
    "client-admitted": ["relation_id_7"],
    "client-problems": {"9": "app: database name 'pg_x' is reserved"},
    "client-granted": {"relation_id_7": "0123456789abcdef"},
    "client-published": {"7": "fedcba9876543210"},
    "backup-stanza": "1111222233334444",
    "backup-tls-secret": "secret://model/d0tls",
    "backup-error": "S3 repository refused: bucket: the bucket does not exist",
    "restore": RESTORE,
    "backup-succeeded": {"full": "2026-01-01T02:00:00+00:00"},
    "backup-fired": {"full": "2026-01-01T02:00:00+00:00"},
    "extensions-applied": ["citext"],
    "extensions-error": "",
}
EXPECTED = PeerAppData(
    system_users_secret="secret://model/d0abc",
    users_revision=2,
    client_rules=[("orders", "relation_id_7")],
    client_admitted=["relation_id_7"],
    client_problems={"9": "app: database name 'pg_x' is reserved"},
    client_granted={"relation_id_7": "0123456789abcdef"},
    client_published={"7": "fedcba9876543210"},
    backup_stanza="1111222233334444",
    backup_tls_secret="secret://model/d0tls",
    backup_error="S3 repository refused: bucket: the bucket does not exist",
    restore=RestoreState(
        id="restore-1",
        backup_id="20260101-000000F",
        phase="restoring",
        restorer=f"{APP}-0",
        started="2026-01-01T00:00:00+00:00",
    ),
    backup_succeeded={"full": "2026-01-01T02:00:00+00:00"},
    backup_fired={"full": "2026-01-01T02:00:00+00:00"},
    extensions_applied=["citext"],
    extensions_error="",
)


def released_bag() -> dict[str, str]:
    return {key: json.dumps(value) for key, value in RELEASED.items()}


def test_the_released_databag_reads_back_field_by_field():
    with hook(released_bag()) as h:
        data = peer_data.load(h.relation, h.charm.app)
    assert data == EXPECTED
    # Field by field, so that a failure names the one that moved.
    for name in PeerAppData.model_fields:
        assert getattr(data, name) == getattr(EXPECTED, name), name
    assert data.restore is not None
    assert data.restore.target_time is None


# Keys added since the released revision: each has a default, so its databags still load.
ADDED = {"client-databases": {}, "client-elevated": []}


def test_every_field_has_a_key_of_the_released_revision_or_a_default():
    aliases = {field.alias for field in PeerAppData.model_fields.values()}
    assert aliases == set(RELEASED) | set(ADDED)
    defaults = PeerAppData().model_dump(by_alias=True)
    assert {key: defaults[key] for key in ADDED} == ADDED


def test_save_writes_the_keys_the_released_revision_reads():
    with hook() as h:
        fields = {name: getattr(EXPECTED, name) for name in PeerAppData.model_fields}
        h.writer.save(snapshot(), fields)
    bag = app_bag(h.out)
    assert set(bag) == set(RELEASED) | set(ADDED)
    released = {key: json.loads(value) for key, value in bag.items() if key in RELEASED}
    assert released == RELEASED


def test_a_databag_of_an_older_revision_reads_with_defaults():
    # Written before backups and extensions existed.
    bag = {"system-users-secret": json.dumps("secret://model/d0abc")}
    with hook(bag) as h:
        data = peer_data.load(h.relation, h.charm.app)
    assert data == PeerAppData(system_users_secret="secret://model/d0abc")
    assert data.users_revision == 0
    assert data.restore is None


def test_keys_a_newer_revision_added_are_ignored():
    with hook({**released_bag(), "some-future-key": json.dumps({"x": 1})}) as h:
        assert peer_data.load(h.relation, h.charm.app) == EXPECTED


@pytest.mark.parametrize(
    "bag",
    [
        {"users-revision": json.dumps("not a number")},
        {"restore": json.dumps({"phase": "stopping"})},  # no id
        {"client-rules": "not json"},
    ],
)
def test_an_unreadable_databag_is_treated_as_absent(bag: dict[str, str]):
    with hook(bag) as h:
        assert peer_data.load(h.relation, h.charm.app) == PeerAppData()


def test_load_without_the_peer_relation_is_empty():
    with hook(related=False) as h:
        assert peer_data.load(h.relation, h.charm.app) == PeerAppData()


def test_peer_data_is_immutable():
    data = PeerAppData(users_revision=1)
    with pytest.raises(ValueError, match="frozen"):
        data.users_revision = 2  # type: ignore[misc]


def test_unit_databags_include_this_unit_and_its_peers():
    with hook(unit_data={"a": "1"}) as h:
        bags = peer_data.unit_databags(h.relation, h.charm.unit)
    assert bags == {UNIT: {"a": "1"}, f"{APP}/1": {}, f"{APP}/2": {}}
    with hook(related=False) as h:
        assert peer_data.unit_databags(h.relation, h.charm.unit) == {UNIT: {}}
