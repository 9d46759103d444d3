"""The Backend on real Juju (substrate.backends.real_juju), with jubilant.Juju mocked.

Statuses are built the way jubilant parses `juju status --format json` on a Kubernetes model,
action results the way it parses `juju run --format json`.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import jubilant
import pytest

from substrate.backends import real_juju
from substrate.backends.backend import (
    ActionFailedError,
    Backend,
    BackendError,
    Signal,
    Status,
    WaitTimeoutError,
)
from substrate.backends.real_juju import JujuBackend, convert_status

APP = "postgresql-k8s"
IMAGE = {"postgresql-image": "ghcr.io/example/postgresql-k8s:16"}


def unit_json(
    current: str, message: str = "", *, leader: bool = False, address: str = ""
) -> dict[str, Any]:
    unit: dict[str, Any] = {
        "workload-status": {"current": current, "message": message, "since": "01 Jan 2025"},
        "juju-status": {"current": "idle", "since": "01 Jan 2025", "version": "3.6.4"},
        "leader": leader,
        "provider-id": "",
    }
    if address:
        unit["address"] = address
    return unit


def app_json(
    units: dict[str, dict[str, Any]], current: str = "active", message: str = ""
) -> dict[str, Any]:
    name = next(iter(units)).split("/")[0] if units else APP
    return {
        "charm": f"local:{name}-0",
        "charm-origin": "local",
        "charm-name": name,
        "charm-rev": 0,
        "exposed": False,
        "base": {"name": "ubuntu", "channel": "24.04"},
        "scale": len(units),
        "provider-id": "0a7c9f3e-5d2b-4e61-9a0f-3b8c1d2e4f50",
        "address": "10.152.183.40",
        "application-status": {"current": current, "message": message, "since": "01 Jan 2025"},
        "relations": {
            "database-peers": [
                {
                    "related-application": name,
                    "interface": "postgresql_peers",
                    "scope": "global",
                }
            ]
        },
        "units": {
            unit: {**info, "provider-id": unit.replace("/", "-")} for unit, info in units.items()
        },
        "endpoint-bindings": {"": "alpha", "database-peers": "alpha"},
    }


def juju_status(apps: dict[str, dict[str, Any]], model: str = "pg") -> jubilant.Status:
    """What `juju.status()` returns for `juju status --format json` with these applications."""
    raw = {
        "model": {
            "name": model,
            "type": "caas",
            "controller": "k8s-controller",
            "cloud": "microk8s",
            "region": "localhost",
            "version": "3.6.4",
            "model-status": {"current": "available", "since": "01 Jan 2025"},
            "sla": "unsupported",
        },
        "machines": {},
        "applications": apps,
        "storage": {},
        "controller": {"timestamp": "12:00:00Z"},
    }
    return jubilant.Status._from_dict(json.loads(json.dumps(raw)))  # pyright: ignore[reportPrivateUsage]


def parse_task(raw: dict[str, Any]) -> jubilant.Task:
    """What `juju.run()` builds from one unit's entry of `juju run --format json`."""
    return jubilant.Task._from_dict(raw)  # pyright: ignore[reportPrivateUsage]


def three_units() -> jubilant.Status:
    return juju_status(
        {
            APP: app_json(
                {
                    f"{APP}/0": unit_json("active", "Primary", leader=True, address="10.1.0.10"),
                    f"{APP}/1": unit_json("active", address="10.1.0.11"),
                    f"{APP}/2": unit_json("waiting", "awaiting sync", address="10.1.0.12"),
                },
                "active",
                "Primary: postgresql-k8s-0",
            )
        }
    )


@pytest.fixture
def juju() -> mock.MagicMock:
    j = mock.create_autospec(jubilant.Juju, instance=True)
    j.model = "pg"
    j.status.return_value = three_units()
    return j


@pytest.fixture
def charm_file(tmp_path: Path) -> Path:
    path = tmp_path / "postgresql-k8s_ubuntu@24.04-amd64.charm"
    path.write_bytes(b"PK")
    return path


@pytest.fixture
def backend(juju: mock.MagicMock, charm_file: Path) -> JujuBackend:
    return JujuBackend(juju, {APP: str(charm_file)}, {APP: IMAGE})


# The interface.


def test_an_instance_is_a_backend(backend: JujuBackend) -> None:
    typed: Backend = backend  # pyright checks this assignment against the Protocol
    assert typed is backend


def test_every_protocol_method_has_the_same_parameters() -> None:
    methods = [
        name
        for name, value in vars(Backend).items()
        if callable(value) and not name.startswith("_")
    ]
    assert {"deploy", "wait_for", "delete_pod", "teardown"} <= set(methods)
    for name in methods:
        expected = inspect.signature(getattr(Backend, name))
        actual = inspect.signature(getattr(JujuBackend, name))
        assert [(p.name, p.kind, p.default) for p in actual.parameters.values()] == [
            (p.name, p.kind, p.default) for p in expected.parameters.values()
        ], name


def test_a_model_name_gets_its_own_juju() -> None:
    backend = JujuBackend("ctrl:admin/pg")
    assert isinstance(backend.juju, jubilant.Juju)
    assert backend.juju.model == "ctrl:admin/pg"
    assert backend.namespace() == "pg"


# Deploy and scale.


def test_deploy_a_packed_charm_with_its_image(
    backend: JujuBackend, juju: mock.MagicMock, charm_file: Path
) -> None:
    backend.deploy("db", units=3, config={"profile": "testing", "plugin-pgvector": True})
    juju.deploy.assert_called_once_with(
        str(charm_file),
        "db",
        num_units=3,
        config={"profile": "testing", "plugin-pgvector": True},
        trust=True,
        resources=IMAGE,
    )


def test_deploy_an_unlisted_charm_from_charmhub(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    backend.deploy("certs", charm="self-signed-certificates", trust=False)
    juju.deploy.assert_called_once_with(
        "self-signed-certificates", "certs", num_units=1, config=None, trust=False, resources=None
    )


def test_deploy_refuses_an_unpacked_charm(juju: mock.MagicMock, tmp_path: Path) -> None:
    backend = JujuBackend(juju, {APP: str(tmp_path / "missing.charm")})
    with pytest.raises(BackendError, match="not packed"):
        backend.deploy(APP)
    juju.deploy.assert_not_called()


def test_config_values_must_be_scalars(backend: JujuBackend, juju: mock.MagicMock) -> None:
    with pytest.raises(BackendError, match="str, int, float or bool"):
        backend.deploy(APP, config={"extensions": ["pgvector"]})
    juju.deploy.assert_not_called()


def test_add_unit(backend: JujuBackend, juju: mock.MagicMock) -> None:
    backend.add_unit(APP, 2)
    juju.add_unit.assert_called_once_with(APP, num_units=2)


def test_remove_the_highest_units_scales_down(backend: JujuBackend, juju: mock.MagicMock) -> None:
    backend.remove_unit(f"{APP}/2", f"{APP}/1")
    juju.cli.assert_called_once_with("scale-application", APP, "1")
    juju.remove_unit.assert_not_called()


def test_remove_a_lower_unit_is_refused(backend: JujuBackend, juju: mock.MagicMock) -> None:
    with pytest.raises(BackendError) as raised:
        backend.remove_unit(f"{APP}/1")
    message = str(raised.value)
    assert f"cannot remove {APP}/1" in message
    assert "removes the highest ordinals" in message
    assert f"({APP}/2)" in message
    juju.cli.assert_not_called()


def test_remove_units_of_two_applications(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.status.return_value = juju_status(
        {
            APP: app_json({f"{APP}/0": unit_json("active")}),
            "probe": app_json({"probe/0": unit_json("active"), "probe/1": unit_json("active")}),
        }
    )
    backend.remove_unit("probe/1", destroy_storage=False)
    juju.cli.assert_called_once_with("scale-application", "probe", "1")


@pytest.mark.parametrize(
    ("units", "error"),
    [
        ((), "at least one unit"),
        (("postgresql-k8s",), "not a unit name"),
        (("postgresql-k8s/x",), "not a unit name"),
        (("other/0",), "no application 'other'"),
        ((f"{APP}/5",), f"{APP}/5 does not exist"),
    ],
)
def test_remove_unit_rejects(
    backend: JujuBackend, juju: mock.MagicMock, units: tuple[str, ...], error: str
) -> None:
    with pytest.raises(BackendError, match=re.escape(error)):
        backend.remove_unit(*units)
    juju.cli.assert_not_called()


# Relations and config.


def test_integrate_and_remove_relation(backend: JujuBackend, juju: mock.MagicMock) -> None:
    backend.integrate(f"{APP}:database", "probe:database")
    backend.remove_relation(APP, "probe")
    juju.integrate.assert_called_once_with(f"{APP}:database", "probe:database")
    juju.remove_relation.assert_called_once_with(APP, "probe")


def test_config(backend: JujuBackend, juju: mock.MagicMock) -> None:
    backend.config(APP, {"durability-synchronous-node-count": 2, "profile": "production"})
    juju.config.assert_called_once_with(
        APP, {"durability-synchronous-node-count": 2, "profile": "production"}
    )


def test_a_failed_juju_command_carries_its_message(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    juju.integrate.side_effect = jubilant.CLIError(
        1, ["juju", "integrate"], "", 'ERROR application "nope" not found (not found)\n'
    )
    with pytest.raises(
        BackendError, match='integrate nope probe: juju exited 1: ERROR application "nope"'
    ):
        backend.integrate("nope", "probe")


# Actions.


def test_run_action_returns_its_results(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.run.return_value = parse_task(
        {
            "id": "6",
            "status": "completed",
            "results": {"password": "s3cret", "return-code": 0},
            "log": [],
        }
    )
    results = backend.run_action(f"{APP}/0", "get-password", {"username": "operator"})
    assert results == {"password": "s3cret"}
    juju.run.assert_called_once_with(
        f"{APP}/0", "get-password", {"username": "operator"}, wait=600.0
    )


def test_run_action_without_params(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.run.return_value = jubilant.Task(id="7", status="completed")
    assert backend.run_action(f"{APP}/0", "list-backups") == {}
    juju.run.assert_called_once_with(f"{APP}/0", "list-backups", None, wait=600.0)


def test_a_failed_action_raises_with_the_charms_message(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    failed = parse_task(
        {
            "id": "8",
            "status": "failed",
            "message": "Switchover failed: postgresql-k8s-1 is not a sync standby",
            "results": {"return-code": 0, "candidate": "postgresql-k8s-1"},
        }
    )
    juju.run.side_effect = jubilant.TaskError(failed)
    with pytest.raises(ActionFailedError) as raised:
        backend.run_action(f"{APP}/1", "promote-to-primary", {"scope": "unit"})
    assert raised.value.message == "Switchover failed: postgresql-k8s-1 is not a sync standby"
    assert raised.value.results == {"candidate": "postgresql-k8s-1"}
    assert "promote-to-primary on postgresql-k8s/1 failed" in str(raised.value)


def test_an_action_that_crashed_reports_its_stderr(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    crashed = parse_task(
        {
            "id": "9",
            "status": "failed",
            "results": {"return-code": 1, "stderr": "Traceback ...\nKeyError: 'x'\n"},
        }
    )
    juju.run.side_effect = jubilant.TaskError(crashed)
    with pytest.raises(ActionFailedError) as raised:
        backend.run_action(f"{APP}/0", "create-backup")
    assert raised.value.message == "Traceback ...\nKeyError: 'x'"


def test_a_failed_task_returned_is_still_a_failure(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    juju.run.return_value = jubilant.Task(id="10", status="failed", message="no")
    with pytest.raises(ActionFailedError, match="no"):
        backend.run_action(f"{APP}/0", "create-backup")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("error running action 'nope'"), "nope"),
        (TimeoutError("timed out"), "no result within 600.0s"),
    ],
)
def test_run_action_errors(
    backend: JujuBackend, juju: mock.MagicMock, error: Exception, expected: str
) -> None:
    juju.run.side_effect = error
    with pytest.raises(BackendError, match=re.escape(expected)) as raised:
        backend.run_action(f"{APP}/0", "nope")
    assert not isinstance(raised.value, ActionFailedError)


# Status and waiting.


def test_status_conversion() -> None:
    status = convert_status(
        juju_status(
            {
                APP: app_json(
                    {
                        f"{APP}/0": unit_json(
                            "active", "Primary", leader=True, address="10.1.0.10"
                        ),
                        f"{APP}/1": unit_json("blocked", "fix the config", address="10.1.0.11"),
                        f"{APP}/2": unit_json("waiting", "awaiting sync"),
                    },
                    "blocked",
                    "fix the config",
                ),
                "probe": app_json({"probe/0": {"leader": True}}, "unknown"),
            }
        )
    )
    assert status.apps == {APP: ("blocked", "fix the config"), "probe": ("unknown", "")}
    primary = status.units[f"{APP}/0"]
    assert (primary.workload_status, primary.message, primary.leader, primary.address) == (
        "active",
        "Primary",
        True,
        "10.1.0.10",
    )
    assert status.units[f"{APP}/1"].workload_status == "blocked"
    assert not status.units[f"{APP}/1"].leader
    assert status.units[f"{APP}/2"].address == ""
    assert status.units["probe/0"].workload_status == "unknown"
    assert [u.name for u in status.app_units(APP)] == [f"{APP}/0", f"{APP}/1", f"{APP}/2"]
    assert not status.all_active(APP)


def test_status_reads_the_model(backend: JujuBackend, juju: mock.MagicMock) -> None:
    status = backend.status()
    assert status.all_active(APP) is False
    assert status.units[f"{APP}/2"].message == "awaiting sync"
    juju.status.assert_called_once_with()


def test_wait_for_evaluates_the_condition_on_converted_status(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    settled = juju_status(
        {APP: app_json({f"{APP}/0": unit_json("active"), f"{APP}/1": unit_json("active")})}
    )
    juju.wait.return_value = settled
    seen: list[Status] = []

    def condition(status: Status) -> bool:
        seen.append(status)
        return status.all_active(APP, 2)

    result = backend.wait_for(condition, timeout=120.0, what="two active units")
    assert result.all_active(APP, 2)
    (ready,), kwargs = juju.wait.call_args
    assert kwargs == {"delay": 1.0, "timeout": 120.0, "successes": 3}
    assert ready(settled) is True
    assert ready(three_units()) is False
    assert isinstance(seen[-1], Status)
    assert seen[-1].units[f"{APP}/2"].workload_status == "waiting"


def test_wait_for_timeout_says_what_and_shows_the_last_status(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    def never(ready: Callable[[jubilant.Status], bool], **_: Any) -> jubilant.Status:
        assert not ready(three_units())
        raise TimeoutError("wait timed out after 5s")

    juju.wait.side_effect = never
    with pytest.raises(WaitTimeoutError) as raised:
        backend.wait_for(lambda s: s.all_active(APP), timeout=5, what="all active")
    message = str(raised.value)
    assert "timed out after 5s waiting for all active" in message
    assert f"{APP}/2: waiting 'awaiting sync'" in message
    assert f"{APP}/0: active 'Primary' (leader)" in message


def test_wait_timeout_before_any_status(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.wait.side_effect = TimeoutError("wait timed out after 1s")
    with pytest.raises(WaitTimeoutError, match="no status was read"):
        backend.wait_for(lambda s: True, timeout=1)


# Commands in units.


def test_exec_quotes_the_command_for_the_shell(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.ssh.return_value = "1\n"
    out = backend.exec(f"{APP}/0", ["psql", "-tAc", "select 1"])
    assert out == "1\n"
    juju.ssh.assert_called_once_with(f"{APP}/0", "psql -tAc 'select 1'", container="postgresql")


def test_exec_in_another_container(backend: JujuBackend, juju: mock.MagicMock) -> None:
    backend.exec("probe/0", ["cat", "/srv/data/x"], container="workload")
    juju.ssh.assert_called_once_with("probe/0", "cat /srv/data/x", container="workload")


def test_exec_failure(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.ssh.side_effect = jubilant.CLIError(
        2, ["juju", "ssh"], "", "ls: cannot access '/nope'\ncommand terminated with exit code 2\n"
    )
    with pytest.raises(BackendError, match="juju exited 2: ls: cannot access"):
        backend.exec(f"{APP}/0", ["ls", "/nope"])
    with pytest.raises(BackendError, match="needs a command"):
        backend.exec(f"{APP}/0", [])


def test_address_from_status(backend: JujuBackend) -> None:
    assert backend.address(f"{APP}/1") == "10.1.0.11"
    with pytest.raises(BackendError, match="no unit"):
        backend.address(f"{APP}/7")


def test_address_of_a_unit_without_a_pod(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.status.return_value = juju_status({APP: app_json({f"{APP}/0": unit_json("waiting")})})
    with pytest.raises(BackendError, match="no address yet"):
        backend.address(f"{APP}/0")


def test_service_address_is_cluster_dns(backend: JujuBackend, juju: mock.MagicMock) -> None:
    assert backend.service_address(f"{APP}-primary") == f"{APP}-primary.pg.svc.cluster.local"
    juju.status.assert_not_called()


def test_service_address_of_the_current_model(juju: mock.MagicMock) -> None:
    juju.model = None
    juju.status.return_value = juju_status({}, model="testing")
    backend = JujuBackend(juju, cluster_domain="k8s.internal")
    assert backend.service_address("db-replicas") == "db-replicas.testing.svc.k8s.internal"


# Chaos.


@pytest.mark.parametrize(
    ("signal", "name"),
    [(Signal.SIGKILL, "KILL"), (Signal.SIGTERM, "TERM"), (Signal.SIGSTOP, "STOP")],
)
def test_kill_runs_pkill_in_the_workload_container(
    backend: JujuBackend, juju: mock.MagicMock, signal: Signal, name: str
) -> None:
    backend.kill(f"{APP}/0", "patroni", signal)
    juju.ssh.assert_called_once_with(
        f"{APP}/0", f"pkill --signal {name} -f '[p]atroni'", container="postgresql"
    )


@pytest.mark.parametrize(
    ("process", "cmdline"),
    [
        ("patroni", "/usr/bin/python3 /usr/local/bin/patroni /var/lib/pg/patroni.yml"),
        ("/usr/lib/postgresql/16/bin/postgres", "/usr/lib/postgresql/16/bin/postgres -D /d"),
        ("postgres: walsender", "postgres: walsender replication 10.1.0.11(4242) streaming"),
        ("pgbackrest.conf", "pgbackrest --config=/etc/pgbackrest.conf server"),
    ],
)
def test_the_pkill_pattern_matches_the_process_but_not_its_own_shell(
    process: str, cmdline: str
) -> None:
    pattern = real_juju.pkill_pattern(process)
    assert re.search(pattern, cmdline)
    shell = "sh -c " + shlex.join(["pkill", "--signal", "KILL", "-f", pattern]) + "; "
    assert not re.search(pattern, shell)
    assert not re.search(real_juju.pkill_pattern("pgbackrest.conf"), "pgbackrestXconf")


def test_kill_with_nothing_to_kill(backend: JujuBackend, juju: mock.MagicMock) -> None:
    juju.ssh.side_effect = jubilant.CLIError(1, ["juju", "ssh"], "", "")
    with pytest.raises(BackendError, match="pkill exits 1 if no process matched"):
        backend.kill(f"{APP}/0", "pgbouncer")


class FakeKubectl:
    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.returncode = returncode
        self.stderr = stderr

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs.get("input")))
        return subprocess.CompletedProcess(argv, self.returncode, "", self.stderr)


@pytest.fixture
def kubectl(monkeypatch: pytest.MonkeyPatch) -> FakeKubectl:
    fake = FakeKubectl()
    monkeypatch.setattr(real_juju.subprocess, "run", fake)
    return fake


def test_delete_pod(backend: JujuBackend, kubectl: FakeKubectl) -> None:
    backend.delete_pod(f"{APP}/1")
    assert kubectl.calls == [(["kubectl", "delete", "pod", f"{APP}-1", "--namespace", "pg"], None)]


def test_force_delete_pod(backend: JujuBackend, kubectl: FakeKubectl) -> None:
    backend.delete_pod(f"{APP}/0", force=True)
    assert kubectl.calls == [
        (
            [
                "kubectl",
                "delete",
                "pod",
                f"{APP}-0",
                "--namespace",
                "pg",
                "--grace-period=0",
                "--force",
            ],
            None,
        )
    ]


def test_delete_pod_for_good_is_refused(backend: JujuBackend, kubectl: FakeKubectl) -> None:
    with pytest.raises(BackendError, match="always recreates"):
        backend.delete_pod(f"{APP}/1", recreate=False)
    with pytest.raises(BackendError, match="recreates a deleted pod by itself"):
        backend.recreate_pod(f"{APP}/1")
    assert kubectl.calls == []


def test_delete_pod_failure(backend: JujuBackend, kubectl: FakeKubectl) -> None:
    kubectl.returncode = 1
    kubectl.stderr = 'Error from server (NotFound): pods "postgresql-k8s-9" not found\n'
    with pytest.raises(BackendError, match=r"exited 1: Error from server \(NotFound\)"):
        backend.delete_pod(f"{APP}/9")


def test_kubectl_missing(backend: JujuBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(real_juju.subprocess, "run", missing)
    with pytest.raises(BackendError, match="No such file"):
        backend.delete_pod(f"{APP}/0")


def test_network_cuts_are_not_supported_by_default(
    backend: JujuBackend, kubectl: FakeKubectl
) -> None:
    for verb in (backend.disconnect, backend.reconnect):
        with pytest.raises(BackendError, match="needs a network policy tool"):
            verb(f"{APP}/0")
    assert kubectl.calls == []


def test_network_cuts_with_network_policies(juju: mock.MagicMock, kubectl: FakeKubectl) -> None:
    backend = JujuBackend(juju, kubectl=("microk8s", "kubectl"), network_policies=True)
    backend.disconnect(f"{APP}/2")
    ((argv, manifest),) = kubectl.calls
    assert argv == ["microk8s", "kubectl", "apply", "--filename", "-"]
    assert manifest is not None
    assert json.loads(manifest) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"substrate-disconnect-{APP}-2", "namespace": "pg"},
        "spec": {
            "podSelector": {"matchLabels": {"statefulset.kubernetes.io/pod-name": f"{APP}-2"}},
            "policyTypes": ["Ingress", "Egress"],
        },
    }
    backend.reconnect(f"{APP}/2")
    assert kubectl.calls[1] == (
        [
            "microk8s",
            "kubectl",
            "delete",
            "networkpolicy",
            f"substrate-disconnect-{APP}-2",
            "--namespace",
            "pg",
            "--ignore-not-found",
        ],
        None,
    )


# Teardown.


def test_teardown_removes_what_it_deployed_in_an_existing_model(
    backend: JujuBackend, juju: mock.MagicMock
) -> None:
    backend.deploy(APP, units=3)
    backend.deploy("probe", charm="substrate-probe")
    backend.teardown()
    juju.remove_application.assert_called_once_with(APP, "probe", destroy_storage=True, force=True)
    juju.destroy_model.assert_not_called()
    backend.teardown()
    juju.remove_application.assert_called_once()


def test_teardown_heals_network_cuts(juju: mock.MagicMock, kubectl: FakeKubectl) -> None:
    backend = JujuBackend(juju, network_policies=True)
    backend.disconnect(f"{APP}/0")
    backend.teardown()
    assert kubectl.calls[-1][0][:4] == [
        "kubectl",
        "delete",
        "networkpolicy",
        f"substrate-disconnect-{APP}-0",
    ]
    juju.remove_application.assert_not_called()


def test_a_model_it_created_is_destroyed(juju: mock.MagicMock, charm_file: Path) -> None:
    juju.model = None
    backend = JujuBackend.new_model(
        "pg-e2e", {APP: str(charm_file)}, {APP: IMAGE}, juju=juju, wait_successes=1
    )
    juju.add_model.assert_called_once_with("pg-e2e", None)
    assert backend.wait_successes == 1
    backend.deploy(APP)
    backend.teardown()
    juju.destroy_model.assert_called_once_with("pg-e2e", destroy_storage=True, force=True)
    juju.remove_application.assert_not_called()
    backend.teardown()
    juju.destroy_model.assert_called_once()
