"""Fakes for charm state-transition tests: Patroni's REST API, PostgreSQL roles and Kubernetes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from ops import testing

import charm
import k8s
import system_users
from charms.postgresql_k8s.v0 import postgresql as pglib
from workload import layout, patroni_client

APP = "postgresql-k8s"


@dataclasses.dataclass
class FakePatroni:
    """Patroni's REST API as the charm sees it, one cluster shared by every member's URL."""

    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    reachable: bool = True
    calls: list[tuple[str, str, Any]] = dataclasses.field(default_factory=list)
    refuse_switchover: bool = False
    # Called on every GET /cluster, to let a test change the cluster as time passes.
    on_cluster: Any = None

    def add_member(self, name: str, role: str, state: str | None = None, **extra: Any) -> None:
        index = int(name.rsplit("-", 1)[1])
        host = f"10.1.0.{index + 10}"
        self.members.append(
            {
                "name": name,
                "role": role,
                "state": state or ("running" if role == "leader" else "streaming"),
                "host": host,
                "port": 5432,
                "api_url": f"http://{host}:8008/patroni",
                "timeline": 1,
                "lag": 0,
                **extra,
            }
        )

    def member(self, name: str) -> dict[str, Any]:
        return next(m for m in self.members if m["name"] == name)

    def writes(self, method: str | None = None) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] != "GET" and (method is None or c[0] == method)]

    def respond(self, method: str, url: str, body: Any) -> requests.Response:
        if not self.reachable:
            raise requests.ConnectionError("connection refused")
        path = "/" + url.split("/", 3)[3]
        self.calls.append((method, path, body))
        handler = getattr(self, f"_{method.lower()}_{path.strip('/').replace('/', '_')}", None)
        status, payload = handler(url, body) if handler else (404, {"error": "no such endpoint"})
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        return response

    def _get_cluster(self, url: str, body: Any) -> tuple[int, Any]:
        if self.on_cluster is not None:
            self.on_cluster(self)
        return 200, {"members": self.members, "scope": APP}

    def _get_config(self, url: str, body: Any) -> tuple[int, Any]:
        return 200, self.config

    def _patch_config(self, url: str, body: Any) -> tuple[int, Any]:
        def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
            for key, value in patch.items():
                if value is None:
                    target.pop(key, None)
                elif isinstance(value, dict):
                    merge(target.setdefault(key, {}), value)
                else:
                    target[key] = value

        merge(self.config, body)
        return 200, self.config

    def _post_restart(self, url: str, body: Any) -> tuple[int, Any]:
        host = url.split("//", 1)[1].split(":", 1)[0]
        member = next(m for m in self.members if m["host"] == host)
        member.pop("pending_restart", None)
        return 200, "restarted"

    def _post_switchover(self, url: str, body: Any) -> tuple[int, Any]:
        candidate = self.member(body["candidate"])
        if self.refuse_switchover or candidate["role"] != "sync_standby":
            return 412, "candidate name does not match with sync_standby"
        old = self.member(body["leader"])
        old["role"], candidate["role"] = "sync_standby", "leader"
        candidate["state"], old["state"] = "running", "streaming"
        return 200, "Successfully switched over"

    def _post_reload(self, url: str, body: Any) -> tuple[int, Any]:
        return 202, "reload scheduled"


@dataclasses.dataclass
class FakeDatabase:
    """PostgreSQL roles as the library would manage them on the primary."""

    passwords: dict[str, str] = dataclasses.field(default_factory=dict)
    hosts: list[str] = dataclasses.field(default_factory=list)
    fail: bool = False

    def __call__(self, *, primary_host: str, user: str, password: str, **_: Any) -> FakeDatabase:
        self.hosts.append(primary_host)
        return self

    def _check(self) -> None:
        if self.fail:
            raise pglib.PostgreSQLConnectionError("connection refused")

    def user_exists(self, user: str) -> bool:
        self._check()
        return user in self.passwords

    def create_user(self, user: str, password: str | None = None, **attrs: Any) -> None:
        self._check()
        self.passwords[user] = password or ""
        self.attributes[user] = attrs

    def alter_user_password(self, user: str, password: str) -> None:
        self._check()
        self.passwords[user] = password

    def password_matches(self, user: str, password: str) -> bool:
        self._check()
        return self.passwords.get(user) == password

    # What client relations and extensions need.

    databases: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> owner
    attributes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    extensions: set[str] = dataclasses.field(default_factory=set)
    in_use: set[str] = dataclasses.field(default_factory=set)  # extensions with dependents
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    version: str = "16.4"

    def list_users(self) -> list[str]:
        self._check()
        return sorted(self.passwords)

    def create_database(self, database: str, owner: str, **_: Any) -> None:
        self._check()
        if self.databases.setdefault(database, owner) != owner:
            raise pglib.PostgreSQLCreateDatabaseError(f"{database} exists with another owner")

    def drop_user(self, user: str, *, reassign_owned_to: str) -> None:
        self._check()
        if self.passwords.pop(user, None) is not None:
            self.dropped.append((user, reassign_owned_to))

    def enable_extensions(self, extensions: dict[str, bool], databases: Any = None) -> None:
        self._check()
        if any(not on and name in self.in_use for name, on in extensions.items()):
            raise pglib.PostgreSQLExtensionInUseError("extension is in use")
        self.extensions |= {name for name, on in extensions.items() if on}
        self.extensions -= {name for name, on in extensions.items() if not on}

    def revoke_roles(self, user: str, roles: list[str]) -> None:
        self._check()
        attrs = self.attributes.get(user, {})
        attrs["in_roles"] = tuple(r for r in attrs.get("in_roles", ()) if r not in roles)

    def get_server_version(self) -> str:
        self._check()
        return self.version


@dataclasses.dataclass
class FakeKubernetes:
    """The charm's Kubernetes calls, recorded."""

    missing: list[str] = dataclasses.field(default_factory=list)
    labelled: list[str] = dataclasses.field(default_factory=list)
    services_applied: int = 0
    fail: bool = False

    def missing_permissions(self) -> list[str]:
        return self.missing

    def label_pod(self, pod: str) -> None:
        if self.fail:
            raise k8s.KubernetesError("forbidden")
        self.labelled.append(pod)

    def apply_services(self) -> None:
        self.services_applied += 1


@pytest.fixture
def patroni(monkeypatch: pytest.MonkeyPatch) -> FakePatroni:
    fake = FakePatroni()

    def send(
        self: patroni_client.PatroniClient, method: str, path: str, body: Any, *_: Any
    ) -> requests.Response:
        try:
            return fake.respond(method, self.base_url + path, body)
        except requests.RequestException as e:
            raise patroni_client.PatroniUnreachableError(str(e)) from e

    monkeypatch.setattr(patroni_client.PatroniClient, "_send", send)
    monkeypatch.setattr(patroni_client.time, "sleep", lambda _: None)
    return fake


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> FakeDatabase:
    fake = FakeDatabase()
    monkeypatch.setattr(pglib, "PostgreSQL", fake)
    return fake


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKubernetes:
    fake = FakeKubernetes()
    monkeypatch.setattr(k8s, "Kubernetes", lambda *_, **__: fake)
    return fake


@pytest.fixture
def ctx(
    patroni: FakePatroni, database: FakeDatabase, kube: FakeKubernetes
) -> testing.Context[charm.PostgresqlK8sCharm]:
    return testing.Context(charm.PostgresqlK8sCharm)


@pytest.fixture
def image(tmp_path: Path) -> dict[str, testing.Mount]:
    """The image's /usr/lib/postgresql holding PostgreSQL 16, and the workload's home, which
    persists across runs like a pod's filesystem (ops.testing wipes anything else)."""
    root = tmp_path / "image-pg"
    (root / "16" / "bin").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    return {
        "image": testing.Mount(location=layout.PG_BASE_DIR, source=root),
        "home": testing.Mount(location=layout.HOME, source=tmp_path / "home"),
    }


def container(
    mounts: dict[str, testing.Mount], can_connect: bool = True, **kwargs: Any
) -> testing.Container:
    # Storage arrives root-owned; the charm hands it to the workload user with chown/chmod.
    kwargs.setdefault("execs", {testing.Exec(["chown"]), testing.Exec(["chmod"])})
    return testing.Container(layout.CONTAINER, can_connect=can_connect, mounts=mounts, **kwargs)


def system_secret() -> testing.Secret:
    return testing.Secret(
        tracked_content=system_users.initial_content(),
        owner="app",
        label=system_users.SECRET_LABEL,
    )


def peers(secret: testing.Secret | None, units: int = 3, **app_data: Any) -> testing.PeerRelation:
    data = {"system-users-secret": json.dumps(secret.id)} if secret else {}
    data |= {k: json.dumps(v) for k, v in app_data.items()}
    return testing.PeerRelation(
        "database-peers",
        local_app_data=data,
        peers_data={i: {} for i in range(1, units)},
    )
