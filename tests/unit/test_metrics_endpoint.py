"""The metrics-endpoint relation (prometheus_scrape, provider): the databags the charm publishes.

Checked against the interface's specification (canonical/charm-relation-interfaces,
interfaces/prometheus_scrape/v0): which fields, in which databag, in which JSON shape.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import ops
import promql_parser
import pydantic
import pytest
import yaml
from ops import testing

from relations import alert_rules, metrics_endpoint
from tests.unit.builders import APP, Ctx, FakePatroni, Mounts, deployed, healthy_cluster

MODEL = testing.Model(name="db-model", uuid="6f0d7c2a-1e3b-4c5d-8e9f-0a1b2c3d4e5f")
TOPOLOGY = {
    "juju_model": "db-model",
    "juju_model_uuid": "6f0d7c2a-1e3b-4c5d-8e9f-0a1b2c3d4e5f",
    "juju_application": APP,
    "juju_charm": "postgresql-k8s",
}


# The specification's models of the provider's databags (required fields, JSON-encoded values).
class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class AlertRule(Strict):
    alert: str
    expr: str
    for_: str = pydantic.Field(alias="for")  # required by the specification's model
    labels: dict[str, str]
    annotations: dict[str, str]


class AlertGroup(Strict):
    name: str
    rules: list[AlertRule]


class AlertRules(Strict):
    groups: list[AlertGroup]


class StaticConfig(pydantic.BaseModel):
    targets: list[str]


class ScrapeJob(pydantic.BaseModel):
    job_name: str
    metrics_path: str
    static_configs: list[StaticConfig]


class ScrapeMetadata(Strict):
    model: str
    model_uuid: str
    application: str
    unit: str
    charm_name: str


class AppData(Strict):
    alert_rules: pydantic.Json[AlertRules]
    scrape_jobs: pydantic.Json[list[ScrapeJob]]
    scrape_metadata: pydantic.Json[ScrapeMetadata]


class UnitData(pydantic.BaseModel):  # Juju's own keys (ingress-address...) share the databag
    prometheus_scrape_unit_address: str
    prometheus_scrape_unit_name: str


def scrape_relation() -> testing.Relation:
    return testing.Relation(
        metrics_endpoint.RELATION, remote_app_name="prometheus", remote_units_data={0: {}}
    )


def related(image: Mounts, leader: bool = True) -> testing.State:
    state = deployed(image, leader=leader, model=MODEL)
    return dataclasses.replace(state, relations=[*state.relations, scrape_relation()])


def published(out: testing.State) -> testing.Relation:
    return next(r for r in out.relations if r.endpoint == metrics_endpoint.RELATION)


# -- through the charm -------------------------------------------------------------------------


def test_leader_publishes_jobs_topology_and_rules(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), related(image))

    relation = published(out)
    app = AppData.model_validate(dict(relation.local_app_data))
    assert app.scrape_metadata == ScrapeMetadata(
        model="db-model",
        model_uuid=MODEL.uuid,
        application=APP,
        unit=f"{APP}/0",
        charm_name="postgresql-k8s",
    )
    jobs = {
        (j.job_name, j.metrics_path, tuple(j.static_configs[0].targets)) for j in app.scrape_jobs
    }
    assert jobs == {
        ("postgresql-exporter", "/metrics", ("*:9187",)),
        ("patroni", "/metrics", ("*:8008",)),
    }
    rules = [rule for group in app.alert_rules.groups for rule in group.rules]
    assert len(rules) == sum(len(g["rules"]) for g in alert_rules.load())
    for rule in rules:
        assert rule.labels.items() >= TOPOLOGY.items()
        assert rule.labels["severity"] in {"warning", "critical"}
        assert {"summary", "description", "runbook"} <= rule.annotations.keys()
        assert every_selector_matches(rule.expr, TOPOLOGY)
    assert all(g.name.startswith(f"db-model_{MODEL.uuid}_{APP}_") for g in app.alert_rules.groups)

    unit = UnitData.model_validate(dict(relation.local_unit_data))
    assert unit.prometheus_scrape_unit_name == f"{APP}/0"
    assert unit.prometheus_scrape_unit_address == "192.0.2.0"  # the pod's IP (ops.testing's)


def test_a_non_leader_publishes_its_own_address_only(
    ctx: Ctx, image: Mounts, patroni: FakePatroni
):
    healthy_cluster(patroni)
    out = ctx.run(ctx.on.config_changed(), related(image, leader=False))

    relation = published(out)
    assert relation.local_app_data == {}
    UnitData.model_validate(dict(relation.local_unit_data))


def test_relation_created_is_enough_to_publish(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    state = related(image)
    out = ctx.run(ctx.on.relation_created(published(state)), state)

    assert set(published(out).local_app_data) == {"alert_rules", "scrape_jobs", "scrape_metadata"}


def test_a_second_run_writes_nothing(ctx: Ctx, image: Mounts, patroni: FakePatroni):
    healthy_cluster(patroni)
    first = ctx.run(ctx.on.config_changed(), related(image))
    writes: list[str] = []
    original = ops.RelationDataContent.__setitem__

    def spy(self: ops.RelationDataContent, key: str, value: str) -> None:
        writes.append(key)
        original(self, key, value)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops.RelationDataContent, "__setitem__", spy)
        ctx.run(ctx.on.update_status(), first)

    assert not [k for k in writes if k.startswith(("scrape_", "alert_", "prometheus_"))]


# -- the rules and their matchers --------------------------------------------------------------


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found


def every_selector_matches(expr: str, labels: dict[str, str]) -> bool:
    wanted = set(labels.items())
    return all(
        wanted
        <= {(m.name, m.value) for m in s.matchers.matchers if m.op == promql_parser.MatchOp.Equal}
        for s in selectors(expr)
    )


@pytest.mark.parametrize(
    "expr",
    [
        "up == 0",
        "sum without (datid, datname) (pg_stat_database_numbackends) / pg_settings_max_connections > 0.8",
        'pg_stat_activity_max_tx_duration{state=~"idle in transaction.*"} > 600',
        "increase(pg_stat_database_deadlocks[5m] offset 1m) > 0",
        "max_over_time(patroni_primary[10m:1m]) and on (juju_unit) absent(pg_up)",
        "time() - patroni_dcs_last_seen > 60",
    ],
)
def test_injection_reaches_every_selector_and_the_result_parses(expr: str):
    injected = alert_rules.inject_matchers(expr, TOPOLOGY)

    assert every_selector_matches(injected, TOPOLOGY)
    assert len(selectors(injected)) == len(selectors(expr))
    assert alert_rules.inject_matchers(injected, TOPOLOGY) == injected  # idempotent


def test_a_matcher_the_author_wrote_wins():
    injected = alert_rules.inject_matchers('up{juju_application="other"}', TOPOLOGY)

    (selector,) = selectors(injected)
    matchers = [(m.name, m.value) for m in selector.matchers.matchers]
    assert ("juju_application", "other") in matchers
    assert ("juju_application", APP) not in matchers


def test_every_shipped_rule_file_has_one_group_per_source_and_complete_rules():
    groups = alert_rules.load()

    assert [g["name"] for g in groups] == ["archiving", "patroni", "postgresql"]
    for group in groups:
        for rule in group["rules"]:
            AlertRule.model_validate(rule)
            assert (
                "juju_unit" in rule["annotations"]["description"]
                or "scope" in rule["annotations"]["description"]
            )


def test_the_topology_names_the_charm_of_charmcraft_yaml():
    charmcraft = pathlib.Path(__file__).parents[2] / "charmcraft.yaml"
    meta: dict[str, Any] = yaml.safe_load(charmcraft.read_text())

    assert meta["name"] == metrics_endpoint.CHARM_NAME
    assert meta["provides"][metrics_endpoint.RELATION] == {
        "interface": "prometheus_scrape",
        "optional": True,
    }


def test_app_data_is_json_with_sorted_keys_so_it_is_stable():
    topology = metrics_endpoint.Topology("m", "u", "a", "a/0")

    assert metrics_endpoint.app_data(topology) == metrics_endpoint.app_data(topology)
    assert json.loads(metrics_endpoint.app_data(topology)["scrape_metadata"]) == {
        "model": "m",
        "model_uuid": "u",
        "application": "a",
        "unit": "a/0",
        "charm_name": "postgresql-k8s",
    }
