"""Fixtures of the integration tier: real workloads on the local substrate (root required)."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from substrate.fixtures import patroni_cluster as pgcluster
from substrate.host import pods
from substrate.k8s import dcs
from workload import patroni

if TYPE_CHECKING:  # boto3 and moto load only for the tests that use S3
    from substrate.k8s.s3 import S3Server


def require_host() -> None:
    """Fail, naming what is missing, when this host cannot run the substrate (never skip)."""
    missing = pgcluster.missing_pieces()
    if missing:
        pytest.fail(
            "integration tests need: " + "; ".join(missing) + " (see tools/install-workload.sh)",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def substrate() -> Iterator[pods.Substrate]:
    """A run of the local substrate: a bridge for pods, torn down (processes first) at the end."""
    require_host()
    with pods.Substrate() as run:
        yield run


@pytest.fixture(scope="module")
def etcd(substrate: pods.Substrate) -> Iterator[dcs.Etcd]:
    """A single-node etcd on the substrate's bridge."""
    server = dcs.Etcd(substrate)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def patroni_cluster(substrate: pods.Substrate, etcd: dcs.Etcd) -> pgcluster.PatroniCluster:
    """Three Patroni members built from the charm's builders, settled.

    Settled: a leader running, two replicas streaming, one of them the sync standby. Everything
    is killed with the substrate at the end of the module.
    """
    cluster = pgcluster.PatroniCluster(
        substrate, etcd, units=3, synchronous_node_count=1, synchronous_mode_strict=False
    )
    cluster.start_all()
    try:
        cluster.wait_settled(timeout=120.0)
    except patroni.PatroniError as e:
        pytest.fail(f"{e}\n{cluster.diagnostics()}", pytrace=False)
    return cluster


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3 server (moto behind stunnel, https://localhost) that checks credentials.

    One per session: buckets are cheap, starting moto is not. Its key pair is the only one
    accepted, so a test can show what a wrong key does.
    """
    missing = [tool for tool in ("stunnel4", "pgbackrest") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"integration tests need: {', '.join(missing)} (see tools/install-workload.sh)",
            pytrace=False,
        )
    from substrate.k8s.s3 import S3Server  # noqa: PLC0415 - see TYPE_CHECKING

    with S3Server(auth=True) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A new bucket named after the test, in the session's S3 server."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{secrets.token_hex(4)}"
    s3_server.create_bucket(bucket)
    return bucket
