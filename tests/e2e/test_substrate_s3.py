"""Tier 3: what backups need from the substrate: an S3 endpoint for pods, patronictl on the DCS.

The S3 server runs on the host (tests/e2e/conftest.py `s3`); pods resolve its name through their
/etc/hosts, whatever the Services' router writes there, and trust it through the test CA. A
restore runs `patronictl remove` through Pebble with the layer's environment: the pod's Pebble
points that at etcd, as it does for Patroni itself.
"""

from __future__ import annotations

import json

import pytest

from substrate.backends.local import LocalBackend
from substrate.k8s.s3 import S3Server
from tests.e2e.conftest import S3_DNS_NAME
from tests.e2e.helpers import APP
from workload import layout

pytestmark = pytest.mark.e2e

UNIT = f"{APP}/0"
# In the pod's own /tmp: nothing of the host's, nothing the charm manages.
CA_FILE = "/tmp/s3-ca.pem"
CONF_FILE = "/tmp/pgbackrest-s3.conf"
BUCKET = "substrate-check"
AS_WORKLOAD_USER = [
    "setpriv",
    f"--reuid={layout.WORKLOAD_USER}",
    f"--regid={layout.WORKLOAD_USER}",
    "--init-groups",
    "--",
]


@pytest.fixture(scope="module")
def unit(juju: LocalBackend, s3: S3Server) -> str:
    """One unit, deployed once the S3 name is registered (a new pod must resolve it too)."""
    # Strict synchronous mode would hold every commit of a lone unit for a standby that never
    # comes, the charm's own hooks included.
    juju.deploy(APP, units=1, config={"synchronous-mode-strict": False})
    juju.write_file(UNIT, CA_FILE, s3.ca_pem, mode=0o644)
    return UNIT


def resolved(juju: LocalBackend, unit: str, name: str) -> str:
    """The IPv4 address a pod resolves `name` to (empty when it does not resolve)."""
    # ahostsv4: `getent hosts` asks for IPv6 first and waits for the pod's unreachable DNS.
    out = juju.exec(unit, ["sh", "-c", 'getent ahostsv4 "$1" || true', "sh", name]).split()
    return out[0] if out else ""


def test_pods_resolve_the_s3_name_whatever_the_router_writes(juju: LocalBackend, unit: str):
    assert resolved(juju, unit, S3_DNS_NAME) == juju.host_address

    # The router rewrites every pod's extra names whenever a Service changes, and clears them
    # when it stops: the S3 name stays through both.
    juju.router.sync_hosts()
    assert resolved(juju, unit, S3_DNS_NAME) == juju.host_address
    juju.substrate.hosts.set_services({})
    assert resolved(juju, unit, S3_DNS_NAME) == juju.host_address
    juju.router.sync_hosts()
    for name, address in juju.router.hosts_entries().items():
        assert resolved(juju, unit, name) == address


def test_the_endpoint_answers_over_tls_signed_by_the_test_ca(
    juju: LocalBackend, s3: S3Server, unit: str
):
    url = f"{s3.endpoint}/"
    assert url.startswith(f"https://{S3_DNS_NAME}:")
    # Signed with a key pair the server does not know: S3 itself answers, and refuses it.
    curl = ["curl", "-sS", "--max-time", "10", "--aws-sigv4", f"aws:amz:{s3.region}:s3"]
    curl += ["--user", "AKIANOSUCHKEY:not-a-secret", "-o", "/dev/null", "-w", "%{http_code}"]
    assert juju.exec(unit, [*curl, "--cacert", CA_FILE, url]) == "403"
    # Without the test CA the handshake fails (curl exit 60: certificate not trusted).
    untrusted = juju.exec(unit, ["sh", "-c", '"$@" >/dev/null 2>&1; echo $?', "sh", *curl, url])
    assert untrusted.strip() == "60"


def test_pgbackrest_in_the_pod_reads_the_bucket(juju: LocalBackend, s3: S3Server, unit: str):
    s3.create_bucket(BUCKET)
    s3.client().put_object(Bucket=BUCKET, Key="repo/hello.txt", Body=b"from the host")
    conf = "\n".join(
        [
            "[global]",
            "repo1-type=s3",
            "repo1-path=/repo",
            f"repo1-s3-bucket={BUCKET}",
            f"repo1-s3-endpoint={S3_DNS_NAME}",
            f"repo1-storage-port={s3.port}",
            f"repo1-s3-region={s3.region}",
            "repo1-s3-uri-style=path",
            f"repo1-s3-key={s3.access_key}",
            f"repo1-s3-key-secret={s3.secret_key}",
            f"repo1-storage-ca-file={CA_FILE}",
            "log-level-console=warn",
            "log-level-file=off",
            "",
        ]
    )
    juju.write_file(unit, CONF_FILE, conf, mode=0o600, owner=layout.WORKLOAD_USER)
    pgbackrest = [*AS_WORKLOAD_USER, "pgbackrest", f"--config={CONF_FILE}"]

    listing = json.loads(juju.exec(unit, [*pgbackrest, "--output=json", "repo-ls"]))
    assert listing["hello.txt"]["type"] == "file"
    assert juju.exec(unit, [*pgbackrest, "repo-get", "hello.txt"]) == "from the host"


def test_patronictl_run_through_pebble_with_the_layers_environment_acts_on_etcd(
    juju: LocalBackend, unit: str
):
    juju.wait_for(lambda status: status.all_active(APP, 1), timeout=180, what=f"{unit} active")
    pebble = juju.pebble(unit)
    environment = pebble.get_plan().services[layout.SERVICE_POSTGRESQL].environment
    assert any(key.startswith("PATRONI_KUBERNETES_") for key in environment)
    patronictl = ["patronictl", "-c", layout.PATRONI_CONF]

    process = pebble.exec(
        [*patronictl, "list", "--format", "json"],
        environment=environment,
        user=layout.WORKLOAD_USER,
        group=layout.WORKLOAD_GROUP,
        timeout=30,
    )
    out, _ = process.wait_output()
    members = json.loads(out)
    assert [(m["Member"], m["Role"], m["State"]) for m in members] == [
        (unit.replace("/", "-"), "Leader", "running")
    ]
