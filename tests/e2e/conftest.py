"""Tier 3: the charm's own hooks on the local substrate (pods, a real Pebble, Patroni on etcd)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import pytest

from substrate.backends.local import LocalBackend
from tests.e2e.helpers import APP

if TYPE_CHECKING:  # boto3 and moto load only for the modules that use S3
    from substrate.k8s.s3 import S3Server

# The name pods give the S3 endpoint: its certificate names it (pgBackRest 2.45 ignores IP SANs).
S3_DNS_NAME = "s3.substrate.test"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, the tail of the Services router's log joins the report.

    CI keeps nothing else: the run's directory goes with the model.
    """
    del call
    report = yield
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    backend = funcargs.get("juju")
    if report.failed and isinstance(backend, LocalBackend):
        log = backend.router.log_path
        if log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
            report.sections.append(("Services router (HAProxy) log, last lines", tail))
        for unit, text in _workload_logs(backend):
            report.sections.append((f"{unit}: Patroni and PostgreSQL logs, last lines", text))
    return report


def _workload_logs(backend: LocalBackend) -> Iterator[tuple[str, str]]:
    """The last lines of each PostgreSQL unit's Patroni and newest PostgreSQL log."""
    script = (
        "tail -n 40 /var/lib/postgresql/logs/patroni/*.log 2>/dev/null;"
        " tail -n 40 $(ls -t /var/lib/postgresql/logs/postgresql/* 2>/dev/null | head -1)"
        " 2>/dev/null; true"
    )
    for unit in sorted(backend.status().units):
        if unit.startswith(APP + "/"):
            try:
                yield unit, backend.exec(unit, ["sh", "-c", script])
            except Exception as e:  # a gone pod must not hide the failure
                yield unit, f"cannot read: {e}"


@pytest.fixture(scope="module")
def juju() -> Iterator[LocalBackend]:
    """A fresh local model per test module; everything is torn down afterwards."""
    with LocalBackend() as backend:
        yield backend


@pytest.fixture(scope="module")
def s3(juju: LocalBackend) -> Iterator[S3Server]:
    """An S3 server on the host that every pod of the module reaches at `s3.endpoint`.

    moto behind stunnel, listening on the pods' gateway, its certificate issued by `s3.ca_pem`
    for S3_DNS_NAME, which every pod resolves to that address. It checks signatures: only
    `s3.access_key`/`s3.secret_key` are accepted. Stopped before the model is torn down, even
    when a test failed; the processes also die with the test process.
    """
    from substrate.k8s.s3 import S3Server  # noqa: PLC0415 - see TYPE_CHECKING

    with S3Server(listen_address=juju.host_address, dns_name=S3_DNS_NAME, auth=True) as server:
        juju.add_host(S3_DNS_NAME, juju.host_address)
        yield server
