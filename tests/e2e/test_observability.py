"""A real Prometheus scrapes 3 units with exactly what the charm publishes, and its alerts fire.

The Prometheus server (Debian's) runs on the host and reaches the pods like a Prometheus in
another namespace would. Its configuration comes from a prometheus_scrape consumer test charm:
the published jobs with every `*` target expanded to each unit's address and the Juju topology
as labels, and the published alert rules. The one change the test makes to those rules is
documented here: every `for:` is shortened to FOR, so that an alert fires within a test.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import requests
import yaml

from substrate.backends.backend import ActionFailedError
from substrate.backends.local import LocalBackend
from tests.e2e.helpers import APP, primary, wait
from tests.e2e.helpers import roles_settled as settled
from workload import layout

pytestmark = pytest.mark.e2e

UNITS = 3
CONSUMER = "prometheus-consumer"
FOR = "10s"
INTERVAL = "2s"
JOBS = 2  # the exporter and Patroni, on every unit


class Prometheus:
    """A Prometheus server loading a config and rule groups, with its HTTP API."""

    def __init__(self, scrape_configs: list[Any], rule_groups: list[Any]):
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        (self.dir / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups}))
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(self.dir / "rules.yml")],
            "scrape_configs": scrape_configs,
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{s.getsockname()[1]}"
        check = subprocess.run(
            ["promtool", "check", "config", str(self.dir / "prometheus.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        wait(self.ready, 60, "Prometheus to be ready")

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).ok
        except requests.RequestException:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    def alerts(self, state: str = "firing") -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=10)
        answer.raise_for_status()
        return [a for a in answer.json()["data"]["alerts"] if a["state"] == state]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def shortened(groups: list[Any]) -> list[Any]:
    """The published groups with every `for:` set to FOR (the test's only change)."""
    return [
        {**g, "rules": [{**r, "for": FOR} if "for" in r else r for r in g["rules"]]}
        for g in groups
    ]


@pytest.fixture(scope="module")
def published(juju: LocalBackend) -> dict[str, Any]:
    juju.deploy(APP, units=UNITS)
    juju.deploy(CONSUMER, charm=CONSUMER)
    juju.integrate(APP, f"{CONSUMER}:metrics-endpoint")
    juju.wait_for(settled(APP, UNITS), timeout=300, what="3 healthy units")

    def answered() -> dict[str, str] | None:
        try:
            result = juju.run_action(f"{CONSUMER}/0", "prometheus-config")
        except ActionFailedError:  # not published yet
            return None
        return result if result.get("units") == str(UNITS) else None

    deadline = time.monotonic() + 120
    while (result := answered()) is None:
        assert time.monotonic() < deadline, "the scrape jobs were never published for 3 units"
        time.sleep(2)
    return {
        "scrape_configs": json.loads(result["scrape-configs"]),
        "groups": json.loads(result["alert-rules"])["groups"],
    }


@pytest.fixture(scope="module")
def prometheus(published: dict[str, Any]) -> Iterator[Prometheus]:
    server = Prometheus(published["scrape_configs"], shortened(published["groups"]))
    yield server
    server.stop()


def test_every_unit_is_scraped_on_both_jobs(prometheus: Prometheus):
    def all_up() -> bool:
        up = prometheus.query("up")
        return len(up) == UNITS * JOBS and all(s["value"][1] == "1" for s in up)

    wait(all_up, 60, "every target up")
    units = {s["metric"]["juju_unit"] for s in prometheus.query("up")}
    assert units == {f"{APP}/{i}" for i in range(UNITS)}


def test_every_metric_an_alert_rule_uses_is_served(
    prometheus: Prometheus, published: dict[str, Any]
):
    names: set[str] = set()

    def collect(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    for group in published["groups"]:
        for rule in group["rules"]:
            promql_parser.transform(promql_parser.parse(rule["expr"]), post_visit=collect)
    assert len(names) > 10
    wait(lambda: all(prometheus.query(f"count({n})") for n in names), 60, "every metric served")
    missing = sorted(n for n in names if not prometheus.query(f"count({n})"))
    assert missing == []


def test_a_healthy_cluster_fires_nothing(prometheus: Prometheus):
    time.sleep(15)  # longer than FOR: whatever matches on a healthy cluster would fire
    assert [a["labels"]["alertname"] for a in prometheus.alerts()] == []


def test_a_replica_down_fires_its_alerts_and_they_resolve(
    juju: LocalBackend, prometheus: Prometheus
):
    replica = next(u for u in (f"{APP}/{i}" for i in range(UNITS)) if u != primary(juju))
    pebble = juju.pebble(replica)
    pebble.stop_services([layout.SERVICE_POSTGRESQL])  # Patroni and PostgreSQL on one replica

    def firing() -> set[str]:
        return {
            a["labels"]["alertname"]
            for a in prometheus.alerts()
            if a["labels"].get("juju_unit") == replica
        }

    wait(lambda: {"PostgresqlDown", "PostgresqlScrapeTargetDown"} <= firing(), 90, "the alerts")
    pebble.start_services([layout.SERVICE_POSTGRESQL])
    juju.wait_for(settled(APP, UNITS), timeout=300, what="the replica back")
    wait(lambda: not firing(), 90, "the alerts to resolve")
