"""Fixtures that install the fakes of tests/unit/builders.py in place of the charm's outside world."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import pytest
import requests
from ops import testing

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
