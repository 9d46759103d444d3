"""Fixtures that install the fakes of tests/unit/builders.py in place of the charm's outside world."""

from __future__ import annotations

import posixpath
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from ops import testing
from ops._private import harness

import charm
import k8s
from charms.postgresql_k8s.v0 import postgresql as pglib
from tests.unit.builders import FakeDatabase, FakeKubernetes, FakePatroni
from workload import layout, patroni_client, scheduler


@pytest.fixture
def patroni(monkeypatch: pytest.MonkeyPatch) -> FakePatroni:
    """Every PatroniClient the charm makes answered by one FakePatroni, without sockets."""
    fake = FakePatroni()

    def send(
        self: patroni_client.PatroniClient, method: str, path: str, body: Any, *_: Any
    ) -> requests.Response:
        try:
            return fake.respond(method, self.base_url + path, body, self._session.auth)
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
    """The image's /usr/lib/postgresql holding PostgreSQL 16, its cron spool, and the workload's
    home, which persist across runs like a pod's filesystem (ops.testing wipes anything else)."""
    root = tmp_path / "image-pg"
    (root / "16" / "bin").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "crontabs").mkdir()
    spool = posixpath.dirname(scheduler.CRONTAB_PATH)
    return {
        "image": testing.Mount(location=layout.PG_BASE_DIR, source=root),
        "home": testing.Mount(location=layout.HOME, source=tmp_path / "home"),
        "cron": testing.Mount(location=spool, source=tmp_path / "crontabs"),
    }


@pytest.fixture(autouse=True)
def pebble_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files pushed and directories made get the owner the charm asks for, as with Pebble.

    ops.testing ignores `user`/`group`; the tests run as root, so the testing Pebble can honour
    them, and a file the charm wrote looks as right to it as it does on a real unit.
    """
    client = harness._TestingPebbleClient  # pyright: ignore[reportPrivateUsage]
    original_push, original_make_dir = client.push, client.make_dir

    def chown(self: Any, path: str, user: str | None, group: str | None) -> None:
        if user is not None or group is not None:
            shutil.chown(self._root / str(path)[1:], user, group)

    def push(self: Any, path: str, source: Any, **kwargs: Any) -> None:
        original_push(self, path, source, **kwargs)
        chown(self, path, kwargs.get("user"), kwargs.get("group"))

    def make_dir(self: Any, path: str, **kwargs: Any) -> None:
        original_make_dir(self, path, **kwargs)
        chown(self, path, kwargs.get("user"), kwargs.get("group"))

    monkeypatch.setattr(client, "push", push)
    monkeypatch.setattr(client, "make_dir", make_dir)
