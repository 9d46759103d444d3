"""The local Juju model (substrate.juju): Juju's event sequences, data, secrets and errors.

Most tests drive a probe charm written for the purpose (tests/charms/substrate_probe); the last
ones deploy the real charm with ops.testing's in-memory Pebble.
"""

from __future__ import annotations

import datetime
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import ops
import pytest
from ops import testing

import charm
from components import system_users
from substrate.juju import (
    InvalidActionError,
    InvalidCommandError,
    InvalidConfigError,
    JujuModelError,
    Model,
    ModelStatus,
    QuiescenceError,
)
from workload import layout, patroni_client

PROBE_ROOT = Path(__file__).parents[1] / "charms" / "substrate_probe"
REPO = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location(
    "substrate_probe_charm", PROBE_ROOT / "src" / "charm.py"
)
assert _spec is not None and _spec.loader is not None
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)
Probe = probe.ProbeCharm

SETUP = ["data-storage-attached", "install", "peers-relation-created"]
START = ["config-changed", "start", "workload-pebble-ready"]


@pytest.fixture
def model() -> Iterator[Model]:
    with Model("probe-model") as m:
        yield m


def deploy(model: Model, app: str = "probe", units: int = 3, **kwargs: Any) -> list[str]:
    return model.deploy(Probe, app, charm_root=PROBE_ROOT, num_units=units, **kwargs)


def since(model: Model, mark: int) -> list[str]:
    return [f"{d.unit} {d.event}" for d in model.log[mark:]]


# -- deploy, leadership, scale -------------------------------------------------------------


def test_deploy_runs_jujus_setup_sequence_and_elects_the_lowest_unit(model: Model):
    units = deploy(model)

    assert units == ["probe/0", "probe/1", "probe/2"]
    joins = ["peers-relation-joined", "peers-relation-changed"] * 2
    assert model.events("probe/0") == [*SETUP, "leader-elected", *START, *joins]
    assert model.events("probe/1") == [*SETUP, *START, *joins]
    assert model.events("probe/2") == [*SETUP, *START, *joins]
    assert [d.remote for d in model.log if d.unit == "probe/1" and "joined" in d.event] == [
        "probe/0",
        "probe/2",
    ]
    status = model.status()
    assert [u.leader for u in status.units.values()] == [True, False, False]
    assert {u.workload_status for u in status.units.values()} == {"active"}
    assert status.unit("probe/2").message == "hello; peers=2/3"  # relation units / planned
    assert status.unit("probe/2").opened_ports == ("8080/tcp",)
    assert status.apps["probe"].message == "led by probe/0"
    assert len({u.address for u in status.units.values()}) == 3
    assert not model.failures


def test_unit_numbers_are_pod_ordinals(model: Model):
    # The probe has a container: a Kubernetes sidecar unit is its StatefulSet pod, numbered by
    # ordinal; scaling down frees the highest and the next unit takes the lowest free one.
    deploy(model, units=3)
    model.remove_unit("probe/2")
    assert model.add_unit("probe") == ["probe/2"]
    model.remove_unit("probe/0")
    assert model.add_unit("probe") == ["probe/0"]
    assert model.units("probe") == ["probe/0", "probe/1", "probe/2"]


def test_a_new_unit_joins_every_existing_peer(model: Model):
    deploy(model, units=2)
    mark = len(model.log)
    model.add_unit("probe")
    assert since(model, mark) == [
        *(f"probe/2 {e}" for e in [*SETUP, *START]),
        "probe/2 peers-relation-joined", "probe/2 peers-relation-changed",
        "probe/0 peers-relation-joined", "probe/0 peers-relation-changed",
        "probe/2 peers-relation-joined", "probe/2 peers-relation-changed",
        "probe/1 peers-relation-joined", "probe/1 peers-relation-changed",
    ]  # fmt: skip


def test_leader_writing_peer_app_data_fires_relation_changed_on_the_others(model: Model):
    deploy(model)
    mark = len(model.log)
    model.config("probe", {"greeting": "hi"})

    peer = model.relation_id("probe:peers")
    assert model.relation_data(peer, "probe") == {"greeting": "hi", "leader": "probe/0"}
    changed = [(d.unit, d.remote) for d in model.log[mark:] if d.event == "peers-relation-changed"]
    assert changed == [("probe/1", "probe"), ("probe/2", "probe")]  # app-level: remote is the app
    assert since(model, mark)[:3] == [f"probe/{n} config-changed" for n in range(3)]


def test_removing_a_unit_departs_it_everywhere_then_stops_and_removes_it(model: Model):
    deploy(model)
    mark = len(model.log)
    model.remove_unit("probe/2")

    assert since(model, mark) == [
        "probe/0 peers-relation-departed",
        "probe/1 peers-relation-departed",
        "probe/2 peers-relation-departed",
        "probe/2 peers-relation-departed",
        "probe/2 peers-relation-broken",
        "probe/2 data-storage-detaching",
        "probe/2 stop",
        "probe/2 remove",
    ]
    assert [d.remote for d in model.log[mark:][:2]] == ["probe/2", "probe/2"]
    assert model.units("probe") == ["probe/0", "probe/1"]
    assert model.status().unit("probe/1").message == "hello; peers=1/2"
    assert model.leader("probe") == "probe/0"


def test_removing_the_leader_elects_the_lowest_remaining_unit(model: Model):
    deploy(model)
    mark = len(model.log)
    model.remove_unit("probe/0")

    events = since(model, mark)
    assert events.index("probe/0 remove") < events.index("probe/1 leader-elected")
    assert events[-1] == "probe/2 peers-relation-changed"  # the new leader's write
    assert model.leader("probe") == "probe/1"
    peer = model.relation_id("probe:peers")
    assert model.relation_data(peer, "probe")["leader"] == "probe/1"
    assert model.status().apps["probe"].message == "led by probe/1"


def test_a_dead_leader_loses_leadership_and_its_hooks_wait(model: Model):
    deploy(model, units=2)
    model.mark_dead("probe/0")
    assert model.leader("probe") == "probe/1"
    assert model.events("probe/1")[-1] == "leader-elected"

    model.update_status()
    # The new leader's peer write and the tick wait for the dead unit.
    assert model.pending() == [("probe/0", "relation-changed"), ("probe/0", "update-status")]
    assert model.status().unit("probe/0").agent_status == "lost"
    model.mark_alive("probe/0")
    assert model.pending() == []
    assert model.leader("probe") == "probe/1"


# -- relations ---------------------------------------------------------------------------


def test_integrate_runs_created_joined_changed_and_shares_data(model: Model):
    deploy(model, "a", units=2)
    deploy(model, "b", units=1)
    mark = len(model.log)
    relation = model.integrate("a:served", "b")  # b's endpoint found by interface and role

    events = since(model, mark)
    assert events[:3] == [
        "a/0 served-relation-created",
        "a/1 served-relation-created",
        "b/0 used-relation-created",
    ]
    for unit, remotes in (("a/0", ["b/0"]), ("a/1", ["b/0"]), ("b/0", ["a/0", "a/1"])):
        endpoint = "used" if unit.startswith("b") else "served"
        joins = [(d.event, d.remote) for d in model.log[mark:] if d.unit == unit][1:]
        expected = [
            (f"{endpoint}-relation-{k}", r) for r in remotes for k in ("joined", "changed")
        ]
        assert joins[: len(expected)] == expected
    secret_id = model.relation_data(relation, "a")["token-secret"]
    assert model.relation_data(relation, "b/0")["token-seen"] == "first"
    assert model.relation_data(relation, "b/0")["ingress-address"] == model.address("b/0")
    # b/0's write reaches both units of a.
    assert events[-2:] == ["a/0 served-relation-changed", "a/1 served-relation-changed"]
    assert model.secret(secret_id).grants == {relation: {"b"}}
    assert model.status().apps["a"].relations == {"peers": ["a"], "served": ["b"]}


def test_integrate_refuses_duplicates_and_unknown_endpoints(model: Model):
    deploy(model, "a", units=1)
    deploy(model, "b", units=1)
    model.integrate("a:served", "b:used")
    with pytest.raises(InvalidCommandError, match="already exists"):
        model.integrate("a:served", "b:used")
    with pytest.raises(InvalidCommandError, match="no endpoint"):
        model.integrate("a:nope", "b")


def test_remove_relation_departs_and_breaks_both_sides_and_revokes_grants(model: Model):
    deploy(model, "a", units=1)
    deploy(model, "b", units=1)
    relation = model.integrate("a:served", "b:used")
    secret_id = model.relation_data(relation, "a")["token-secret"]
    mark = len(model.log)
    model.remove_relation("a", "b")

    assert since(model, mark) == [
        "a/0 served-relation-departed",
        "a/0 served-relation-broken",
        "b/0 used-relation-departed",
        "b/0 used-relation-broken",
    ]
    assert model.secret(secret_id).grants == {}
    with pytest.raises(KeyError):
        model.relation_data(relation, "a")


def test_departing_unit_of_a_cross_relation_is_seen_by_the_remote_side(model: Model):
    deploy(model, "a", units=2)
    deploy(model, "b", units=1)
    relation = model.integrate("a:served", "b:used")
    mark = len(model.log)
    model.remove_unit("a/1")
    departed = [(d.unit, d.event, d.remote) for d in model.log[mark:] if "departed" in d.event]
    assert ("b/0", "used-relation-departed", "a/1") in departed
    assert ("a/1", "served-relation-departed", "b/0") in departed
    with pytest.raises(KeyError):
        model.relation_data(relation, "a/1")


# -- secrets -------------------------------------------------------------------------------


def test_new_secret_revision_reaches_consumers_and_old_one_is_removed(model: Model):
    deploy(model, "a", units=2)
    deploy(model, "b", units=2)
    relation = model.integrate("a:served", "b:used")
    secret_id = model.relation_data(relation, "a")["token-secret"]
    assert model.secret(secret_id).tracked == {"b/0": 1, "b/1": 1}
    mark = len(model.log)

    result = model.run_action("a/0", "rotate", {"token": "second"})

    assert result.status == "completed" and result.results == {"revision": "2"}
    events = since(model, mark)
    assert events[:3] == ["a/0 rotate-action", "b/0 secret-changed", "b/1 secret-changed"]
    assert "a/1 secret-changed" not in events  # units of the owner get no secret-changed
    assert events[-1] == "a/0 secret-remove"  # revision 1 unused once both consumers refreshed
    record = model.secret(secret_id)
    assert record.tracked == {"b/0": 2, "b/1": 2}
    assert record.revisions == {2: {"token": "second"}}  # the charm removed revision 1
    assert record.labels == {"b/0": "remote-token", "b/1": "remote-token"}  # per observer
    assert record.owner_label == "token"
    for unit in ("b/0", "b/1"):
        assert model.relation_data(relation, unit)["token-seen"] == "second"


def test_only_the_leader_may_manage_an_app_secret(model: Model):
    deploy(model, "a", units=2)
    deploy(model, "b", units=1)
    model.integrate("a:served", "b:used")
    result = model.run_action("a/1", "rotate", {"token": "nope"})
    assert result.status == "failed"
    assert isinstance(result.exception, ops.ModelError)
    assert model.status().unit("a/1").agent_status == "idle"  # a failed action is no hook error


# -- config --------------------------------------------------------------------------------


def test_config_is_validated_like_juju_config(model: Model):
    deploy(model, units=1)
    mark = len(model.log)
    for bad in ({"count": "many"}, {"count": 1.5}, {"enabled": "maybe"}, {"nope": 1},
                {"greeting": 5}):  # fmt: skip
        with pytest.raises(InvalidConfigError):
            model.config("probe", bad)
    assert model.log[mark:] == []
    assert model.config("probe")["count"] == 1

    config = model.config("probe", {"count": "5", "ratio": 2, "enabled": "false"})
    assert (config["count"], config["ratio"], config["enabled"]) == (5, 2.0, False)
    assert model.events("probe/0")[-1] == "config-changed"

    mark = len(model.log)
    model.config("probe", {"count": 5})  # unchanged: no hook
    assert model.log[mark:] == []
    assert model.config("probe", reset=["count", "ratio"])["count"] == 1
    assert "ratio" not in model.config("probe")  # no default: absent, as config-get has it


# -- actions -------------------------------------------------------------------------------


def test_action_results_failures_and_params_schema(model: Model):
    deploy(model, units=1)

    done = model.run_action("probe/0", "echo", {"text": "ab", "times": 2})
    assert (done.status, done.results, done.message) == ("completed", {"out": "abab"}, "")
    assert model.run_action("probe/0", "echo", {"text": "x"}).results == {"out": "x"}  # default

    failed = model.run_action("probe/0", "echo", {"text": "x", "fail": True})
    assert (failed.status, failed.message, failed.logs) == (
        "failed",
        "asked to fail",
        ["about to fail"],
    )
    assert model.action_result(failed.id) == failed
    assert model.events("probe/0")[-1] == "echo-action"

    for params, problem in (
        ({}, "missing required property 'text'"),
        ({"text": "x", "extra": 1}, "additional property 'extra'"),
        ({"text": "x", "times": 0}, "minimum"),
        ({"text": 3}, "not of type string"),
        ({"text": "x", "times": True}, "not of type integer"),
    ):
        with pytest.raises(InvalidActionError, match=problem):
            model.run_action("probe/0", "echo", params)
    with pytest.raises(InvalidActionError, match="not defined"):
        model.run_action("probe/0", "nope")


# -- errors and quiescence -----------------------------------------------------------------


def test_a_raising_hook_puts_the_unit_in_error_and_is_retried(model: Model):
    deploy(model, units=2)
    model.config("probe", {"fail-on": "update-status"})
    model.update_status()

    status = model.status()
    for unit in ("probe/0", "probe/1"):
        assert status.unit(unit).workload_status == "error"
        assert status.unit(unit).message == 'hook failed: "update-status"'
        assert isinstance(model.error(unit), RuntimeError)
    assert [d.unit for d in model.failures] == ["probe/0", "probe/1"]

    model.settle()  # Juju's retry: fails again, nothing behind it runs
    assert model.events("probe/0")[-2:] == ["update-status", "update-status"]
    model.config("probe", {"fail-on": ""})
    assert model.events("probe/0")[-3:] == ["update-status", "update-status", "config-changed"]
    assert model.status().unit("probe/0").workload_status == "active"
    assert model.error("probe/0") is None


def test_hooks_that_keep_triggering_each_other_are_reported_as_a_cycle():
    with Model(max_repeats=4) as model:
        deploy(model, units=2)
        with pytest.raises(QuiescenceError) as raised:
            model.config("probe", {"pingpong": True})
    assert set(raised.value.cycle) == {
        ("probe/0", "peers-relation-changed"),
        ("probe/1", "peers-relation-changed"),
    }
    assert "probe/0 peers-relation-changed -> probe/1 peers-relation-changed" in str(
        raised.value
    ) or "probe/1 peers-relation-changed -> probe/0 peers-relation-changed" in str(raised.value)


# -- storage, pod filesystem, Pebble events ----------------------------------------------


def test_storage_survives_a_pod_restart_and_goes_with_destroy_storage(model: Model):
    deploy(model, units=2)
    data = model.storage_path("probe/1", "data")
    assert (data / "attached").read_text() == "probe/1"
    conf = model.container_root("probe/1", "workload") / "etc/probe/probe.conf"
    assert conf.read_text() == "greeting=hello\n"
    (data / "kept").write_text("x")
    mark = len(model.log)

    model.restart_pod("probe/1", address="10.9.9.9")

    assert since(model, mark)[:5] == [
        "probe/1 stop", "probe/1 upgrade-charm", "probe/1 config-changed", "probe/1 start",
        "probe/1 workload-pebble-ready",
    ]  # fmt: skip
    assert (data / "kept").read_text() == "x"
    assert conf.read_text() == "greeting=hello\n"  # written again on the fresh filesystem
    # The new address reaches the peers' view of probe/1's databag.
    peer = model.relation_id("probe:peers")
    assert model.relation_data(peer, "probe/1")["ingress-address"] == "10.9.9.9"
    assert ("probe/0", "probe/1") in [
        (d.unit, d.remote) for d in model.log[mark:] if d.event == "peers-relation-changed"
    ]

    model.remove_unit("probe/1")
    assert data.exists()
    other = model.storage_path("probe/0", "data")
    model.remove_unit("probe/0", destroy_storage=True)
    assert not other.exists()


def test_pebble_notices_and_checks_reach_the_charm(model: Model):
    deploy(model, units=1)
    peer = model.relation_id("probe:peers")
    assert "alive" in model.plan("probe/0", "workload").checks
    assert model.services("probe/0", "workload")["probe"] == ops.pebble.ServiceStatus.ACTIVE

    model.pebble_custom_notice("probe/0", "workload", "example.com/ping", {"n": "1"})
    assert model.events("probe/0")[-1] == "workload-pebble-custom-notice"
    assert model.relation_data(peer, "probe/0")["notice"] == "example.com/ping:{'n': '1'}"

    model.pebble_check_failed("probe/0", "workload", "alive")
    assert model.relation_data(peer, "probe/0")["check"] == "alive:down"
    model.pebble_check_recovered("probe/0", "workload", "alive")
    assert model.relation_data(peer, "probe/0")["check"] == "alive:up"


NOTICE = ops.pebble.Notice(
    id="7",
    user_id=None,
    type=ops.pebble.NoticeType.CUSTOM,
    key="example.com/real",
    first_occurred=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    last_occurred=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    last_repeated=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    occurrences=1,
    last_data={"from": "pebble"},
)


class RecordingPebble(ops.pebble.Client):
    """A Pebble client that answers (or not) and records what it is asked; any other call goes
    to a socket that does not exist."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.up = False
        self.calls: list[str] = []
        self.files: dict[str, Any] = {}

    def get_system_info(self) -> ops.pebble.SystemInfo:
        if not self.up:
            return super().get_system_info()  # ConnectionError: the socket is not there
        return ops.pebble.SystemInfo(version="1.0")

    def add_layer(self, label: str, layer: Any, *, combine: bool = False) -> None:
        self.calls.append(f"add_layer {label}")

    def replan_services(self, timeout: float = 30.0, delay: float = 0.1) -> ops.pebble.ChangeID:
        self.calls.append("replan")
        return ops.pebble.ChangeID("1")

    def push(self, path: str | PurePath, source: Any, **_: Any) -> None:
        self.files[str(path)] = source

    def get_notices(self, **_: Any) -> list[ops.pebble.Notice]:
        return [NOTICE]

    def get_notice(self, id: str) -> ops.pebble.Notice:
        assert id == NOTICE.id
        return NOTICE


def test_the_pebble_seam_hands_the_charm_the_substrates_client(tmp_path: Path):
    clients = {f"probe/{n}": RecordingPebble(str(tmp_path / f"{n}.socket")) for n in range(2)}
    asked: list[tuple[str, str]] = []

    def factory(unit: str, container: str) -> Any:
        asked.append((unit, container))
        return clients[unit]

    with Model(pebble_client_factory=factory) as model:
        deploy(model, units=2)
        # No pebble-ready without the substrate saying so, and can_connect follows the client.
        assert "workload-pebble-ready" not in model.events("probe/0")
        assert model.status().unit("probe/0").message == "waiting for Pebble"
        assert ("probe/1", "workload") in asked

        clients["probe/0"].up = True
        model.pebble_ready("probe/0", "workload")

        assert model.events("probe/0")[-1] == "workload-pebble-ready"
        assert clients["probe/0"].calls == ["add_layer probe", "replan"]
        assert clients["probe/0"].files == {probe.CONF: "greeting=hello\n"}
        assert clients["probe/1"].calls == []
        assert model.status().unit("probe/0").message == "hello; peers=1/2"
        assert not (model.container_root("probe/0", "workload") / "etc").exists()

        # A notice the real Pebble holds: the charm reads it through the same client.
        model.pebble_custom_notice("probe/0", "workload", NOTICE.key)
        peer = model.relation_id("probe:peers")
        notice = model.relation_data(peer, "probe/0")["notice"]
        assert notice == "example.com/real:{'from': 'pebble'}"


# -- the real charm ------------------------------------------------------------------------


@pytest.fixture
def no_patroni(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patroni does not run (in-memory Pebble starts nothing): its API is unreachable, fast."""

    def unreachable(*_: Any, **__: Any) -> Any:
        raise patroni_client.PatroniUnreachableError("connection refused")

    monkeypatch.setattr(patroni_client.PatroniClient, "_send", unreachable)

    def no_sleep(_seconds: float) -> None:
        pass

    monkeypatch.setattr(time, "sleep", no_sleep)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """The workload image's tree, as far as the charm looks at it."""
    (tmp_path / "image" / "usr/lib/postgresql/16/bin").mkdir(parents=True)
    return tmp_path / "image"


# The charm hands root-owned storage to the workload user; the in-memory Pebble needs the mocks.
CHOWN = {layout.CONTAINER: [testing.Exec(["chown"]), testing.Exec(["chmod"])]}


@pytest.mark.usefixtures("no_patroni")
def test_the_real_charm_deploys_three_units_and_shares_its_system_users(image: Path):
    with Model("pg") as model:
        model.deploy(
            charm.PostgresqlK8sCharm,
            charm_root=REPO,
            num_units=3,
            trust=True,
            images={layout.CONTAINER: image},
            execs=CHOWN,
        )
        app = "postgresql-k8s"
        status = model.status()
        assert not model.failures
        assert model.leader(app) == f"{app}/0"
        for unit in status.apps[app].units.values():
            assert (unit.workload_status, unit.message) == ("maintenance", "starting PostgreSQL")

        [secret] = model.secrets(owner=app)
        assert secret.owner_label == system_users.SECRET_LABEL
        assert secret.owner_unit is None  # application-owned: every unit reads it
        peer = model.relation_id(f"{app}:database-peers")
        assert model.relation_data(peer, app)["system-users-secret"] == f'"{secret.id}"'
        replication = secret.content()[layout.SystemUser.REPLICATION.secret_key]
        for unit in model.units(app):
            conf = model.container_root(unit, layout.CONTAINER) / layout.PATRONI_CONF.lstrip("/")
            text = conf.read_text()
            assert replication in text
            assert model.address(unit) in text
            assert "postgresql" in model.plan(unit, layout.CONTAINER).services

        labels = model.kube.pod_labels("pg", f"{app}-2")
        assert labels["cluster-name"] == app
        services = {c.name for c in model.kube.calls_of("apply", "Service")}
        assert services == {f"{app}-primary", f"{app}-replicas"}
        assert {c.app for c in model.kube.calls} == {app}


@pytest.mark.usefixtures("no_patroni")
def test_the_real_charm_asks_for_trust_until_it_is_given(image: Path):
    with Model("pg") as model:
        model.deploy(
            charm.PostgresqlK8sCharm,
            charm_root=REPO,
            images={layout.CONTAINER: image},
            execs=CHOWN,
        )
        unit = model.status().unit("postgresql-k8s/0")
        assert unit.workload_status == "blocked"
        assert "juju trust" in unit.message
        assert model.kube.calls_of("patch") == []

        model.trust("postgresql-k8s")

        assert model.status().unit("postgresql-k8s/0").workload_status == "maintenance"
        assert [c.name for c in model.kube.calls_of("patch", "Pod")] == ["postgresql-k8s-0"]


def test_unit_owned_secrets_belong_to_their_unit_and_go_with_it(model: Model):
    deploy(model, units=2)
    owned = {s.owner_unit: s for s in model.secrets() if s.owner_unit is not None}
    assert set(owned) == {"probe/0", "probe/1"}
    assert owned["probe/1"].content() == {"unit": "probe/1"}
    assert model.secrets(owner="probe/1") == [owned["probe/1"]]

    model.remove_unit("probe/1")
    assert model.secrets(owner="probe/1") == []


def test_removing_an_application_breaks_its_relations_first(model: Model):
    deploy(model, "a", units=1)
    deploy(model, "b", units=1)
    relation = model.integrate("a:served", "b:used")
    mark = len(model.log)
    model.remove_application("a")

    events = since(model, mark)
    assert events.index("b/0 used-relation-broken") < events.index("a/0 remove")
    assert "a" not in model.status().apps
    assert model.secrets(owner="a") == []
    with pytest.raises(KeyError):
        model.relation_data(relation, "b")
    deploy(model, "a", units=1)  # the name can be used again
    assert model.units("a") == ["a/0"]


def test_wait_ticks_update_status_until_ready(model: Model):
    deploy(model, units=1)
    ticks: list[int] = []

    def ready(status: ModelStatus) -> bool:
        ticks.append(1)
        return len(ticks) == 3

    model.wait(ready, delay=0)
    assert model.events("probe/0")[-2:] == ["update-status", "update-status"]
    with pytest.raises(TimeoutError):
        model.wait(lambda _: False, timeout=0, delay=0)
    with pytest.raises(JujuModelError, match="error state"):
        model.wait(lambda _: False, delay=0, error=lambda s: s.unit("probe/0").leader)
