"""Prometheus alert rules as the charm ships them, labelled and scoped to one application's topology."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any, cast

import promql_parser
import yaml

# One file per source of metrics (PostgreSQL's exporter, Patroni, archiving), each a Prometheus
# rule file ({"groups": [...]}) that `promtool check rules` accepts as it is.
PROMETHEUS_DIR = pathlib.Path(__file__).parents[1] / "alert_rules" / "prometheus"


def load(directory: pathlib.Path = PROMETHEUS_DIR) -> list[dict[str, Any]]:
    """Every rule group of every file in `directory`, in file-name order."""
    groups: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        content = cast("dict[str, Any]", yaml.safe_load(path.read_text()))
        groups.extend(content["groups"])
    return groups


def inject_matchers(expr: str, labels: Mapping[str, str]) -> str:
    """`expr` with `label="value"` matchers added to every selector that does not set the label.

    Done on the parsed expression, so that a selector inside a function, a range or a subquery
    is reached and nothing else (a string literal, a `by` clause) is touched. Values must be
    Juju names or UUIDs: the library prints values unescaped, and Juju allows no quote or
    backslash in them.
    """

    def scoped(node: promql_parser.Expr) -> promql_parser.Expr | None:
        if not isinstance(node, promql_parser.VectorSelector):
            return None
        # A matcher the rule's author wrote wins (the interface honours hard-coded topology).
        present = {m.name for m in node.matchers.matchers}
        extra = [
            promql_parser.Matcher(promql_parser.MatchOp.Equal, name, value)
            for name, value in labels.items()
            if name not in present
        ]
        node.matchers = promql_parser.Matchers([*node.matchers.matchers, *extra])
        # transform() takes a new node only: the setter above changes the Python view alone.
        return promql_parser.parse(str(node))

    return str(promql_parser.transform(promql_parser.parse(expr), post_visit=scoped))


def scoped_groups(
    groups: list[dict[str, Any]], labels: Mapping[str, str], prefix: str
) -> list[dict[str, Any]]:
    """The groups as one application publishes them: renamed, labelled and matched to it.

    Group names get `prefix` because the consumer gathers rules of many applications (two
    PostgreSQL applications ship the same group names).
    """
    return [
        {
            "name": f"{prefix}_{group['name']}",
            "rules": [
                {
                    **rule,
                    "expr": inject_matchers(str(rule["expr"]), labels),
                    "labels": {**rule.get("labels", {}), **labels},
                }
                for rule in group["rules"]
            ],
        }
        for group in groups
    ]
