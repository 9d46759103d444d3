"""Tier 2: the Prometheus alert rules, checked and unit-tested by Prometheus' own promtool.

Every rule file must load (`promtool check rules`), be exercised by its test file under
tests/alert_rules/ (`promtool test rules`) with every alert both firing and held back, and
still load once the charm has scoped it to an application's topology.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from relations import alert_rules, metrics_endpoint

pytestmark = pytest.mark.integration

TESTS_DIR = pathlib.Path(__file__).parents[1] / "alert_rules"
RULE_FILES = sorted(alert_rules.PROMETHEUS_DIR.glob("*.yaml"))


def promtool(*args: str | pathlib.Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("integration tests need: promtool (see tools/install-workload.sh)")
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def alerts(path: pathlib.Path) -> set[str]:
    content = yaml.safe_load(path.read_text())
    return {rule["alert"] for group in content["groups"] for rule in group["rules"]}


def test_there_is_a_rule_file_per_source() -> None:
    assert [p.name for p in RULE_FILES] == ["archiving.yaml", "patroni.yaml", "postgresql.yaml"]


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_promtool_accepts_the_rule_file(rules: pathlib.Path) -> None:
    result = promtool("check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_fires_and_holds_back_in_its_test_file(rules: pathlib.Path) -> None:
    test_file = TESTS_DIR / f"{rules.stem}_test.yaml"
    tests: list[dict[str, Any]] = yaml.safe_load(test_file.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == alerts(rules)
    assert quiet == alerts(rules)

    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules_the_charm_publishes(tmp_path: pathlib.Path) -> None:
    """Injected matchers and group names are valid for Prometheus, not only for our parser."""
    topology = metrics_endpoint.Topology(
        "cos-model", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "postgresql-k8s", "postgresql-k8s/0"
    )
    published = json.loads(metrics_endpoint.app_data(topology)["alert_rules"])
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(published))

    result = promtool("check", "rules", path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(alerts(p)) for p in RULE_FILES)} rules found" in result.stdout
