"""What the charm's hooks cost on a healthy 3-unit cluster: wall time and boundary calls per hook.

Deploys 3 units until healthy, then runs single hooks, one unit at a time, and meters each one
with `hook_costs` (Pebble calls, Patroni REST requests, SQL connections): an idle
update-status and a config-changed that changes nothing, on the leader and on a non-leader; a
config-changed that changes a reload-only PostgreSQL parameter (every unit's hook, as
`juju config` queues them); then the idle update-status again with 1, 10 and 50 client
applications served. Any hook a measured hook caused (a peer relation-changed...) is listed as a
follow-up, and PostgreSQL's start time is compared on every unit around each group, so a
restart shows even if it did not go through a counted call. Prints one JSON object last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import psycopg

from substrate import programs
from substrate.backends.local import LocalBackend
from substrate.fixtures import hook_costs
from substrate.juju import runner
from substrate.programs.demo import APP, roles_settled

UNITS = 3
REPEATS = 5
# A `superuser`-context parameter: applied by a reload, never a restart.
RELOAD_OPTION = "logging-log-min-duration-statement"
RELOAD_PARAMETER = "log_min_duration_statement"
RELOAD_VALUES = (250, 500)
CLIENT_STEPS = (1, 10, 50)

if TYPE_CHECKING:
    from psycopg import abc as psycopg_abc


@dataclasses.dataclass(frozen=True)
class HookRun:
    """One hook the model ran while recording, and what it cost."""

    unit: str
    event: str
    ok: bool
    costs: hook_costs.Costs


@contextlib.contextmanager
def recorded() -> Generator[list[HookRun]]:
    """Meter every hook the model runs until the block ends, each on its own."""
    runs: list[HookRun] = []
    original = runner.Runner.run

    def run(self: runner.Runner, unit: Any, hook: Any) -> runner.HookOutcome:
        with hook_costs.meter() as costs:
            outcome = original(self, unit, hook)
        dispatch = outcome.dispatch
        runs.append(HookRun(dispatch.unit, dispatch.event, dispatch.ok, costs))
        return outcome

    with mock.patch.object(runner.Runner, "run", run):
        yield runs


def summarise(runs: list[HookRun]) -> dict[str, Any]:
    """Wall time (median, max) and counts of repeated runs of one hook.

    A count is its largest value over the runs; `counts_varied` names those that differed.
    """
    summaries = [r.costs.summary() for r in runs]
    walls = [r.costs.seconds for r in runs]
    counts = {k: v for k, v in summaries[0].items() if isinstance(v, int)}
    varied = sorted(k for k in counts if len({s[k] for s in summaries}) > 1)
    detail: dict[str, dict[str, int]] = {}
    for key in ("pebble_calls", "http_calls"):
        merged: dict[str, int] = {}
        for s in summaries:
            for name, n in s[key].items():
                merged[name] = max(merged.get(name, 0), n)
        detail[key] = dict(sorted(merged.items()))
    return {
        "runs": len(runs),
        "failed": sum(not r.ok for r in runs),
        "wall_s": {"median": round(statistics.median(walls), 3), "max": round(max(walls), 3)},
        **{k: max(s[k] for s in summaries) for k in counts},
        "counts_varied": varied,
        **detail,
    }


def _followups(runs: Iterable[HookRun]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for r in runs:
        key = f"{r.unit} {r.event}"
        seen[key] = seen.get(key, 0) + 1
    return seen


class Bench:
    """The deployment under measurement and what was measured so far."""

    def __init__(self, b: LocalBackend):
        self.b = b
        self.figures: dict[str, Any] = {}
        self.followups: dict[str, dict[str, int]] = {}
        self.restarted: dict[str, list[str]] = {}
        self.password = ""

    # -- the cluster ---------------------------------------------------------------------------

    def deploy(self) -> None:
        """Three units, healthy; then one update-status round so that first-time work is done."""
        start = time.monotonic()
        self.b.deploy(APP, units=UNITS)
        self.b.wait_for(roles_settled(APP, UNITS), timeout=600, what="a healthy cluster")
        self.figures["bootstrap_s"] = round(time.monotonic() - start, 2)
        self.password = str(self.b.run_action(self.leader(), "get-password")["password"])
        self.b.model.update_status()

    def leader(self) -> str:
        """The postgresql-k8s unit that leads."""
        return next(u.name for u in self.b.status().app_units(APP) if u.leader)

    def non_leader(self) -> str:
        """The first postgresql-k8s unit that does not lead."""
        return next(u.name for u in self.b.status().app_units(APP) if not u.leader)

    def roles(self) -> dict[str, str]:
        """Each unit's message (its role), and which leads."""
        return {
            u.name: u.message + (" (leader)" if u.leader else "")
            for u in self.b.status().app_units(APP)
        }

    def _sql(
        self, unit: str, query: psycopg_abc.QueryNoTemplate, params: tuple[Any, ...] = ()
    ) -> Any:
        with psycopg.connect(host=self.b.address(unit), user="operator", password=self.password,
                             dbname="postgres", connect_timeout=5) as c:  # fmt: skip
            row = c.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    def _starts(self) -> dict[str, str]:
        units = [u.name for u in self.b.status().app_units(APP)]
        return {u: str(self._sql(u, "SELECT pg_postmaster_start_time()")) for u in units}

    @contextlib.contextmanager
    def watching_restarts(self, group: str) -> Generator[None]:
        """Note the units whose PostgreSQL started again while the block ran."""
        before = self._starts()
        yield
        after = self._starts()
        self.restarted[group] = sorted(u for u in before if after.get(u) != before[u])

    # -- measurements --------------------------------------------------------------------------

    def fire(self, group: str, units: dict[str, str], kind: str) -> dict[str, Any]:
        """`kind` on each named unit, REPEATS times, one hook at a time; per label a summary."""
        measured: dict[str, list[HookRun]] = {label: [] for label in units}
        follow: list[HookRun] = []
        with self.watching_restarts(group):
            for _ in range(REPEATS):
                for label, unit in units.items():
                    with recorded() as runs:
                        self.b.model.run_hook(unit, kind)
                    mine = next(r for r in runs if r.unit == unit and r.event == kind)
                    measured[label].append(mine)
                    follow += [r for r in runs if r is not mine]
        self.followups[group] = _followups(follow)
        return {
            label: summarise(runs) | {"unit": units[label]} for label, runs in measured.items()
        }

    def config_reload(self, units: dict[str, str]) -> dict[str, Any]:
        """A reload-only option changed REPEATS times; every unit's config-changed measured."""
        measured: dict[str, list[HookRun]] = {label: [] for label in units}
        by_unit = {unit: label for label, unit in units.items()}
        follow: list[HookRun] = []
        applied: list[float] = []
        pending: list[int] = []
        model = self.b.model
        with self.watching_restarts("config-changed-reload"):
            for i in range(REPEATS):
                value = RELOAD_VALUES[i % len(RELOAD_VALUES)]
                start = time.monotonic()
                model.auto_settle = False  # queue config-changed on every unit, as Juju does
                try:
                    model.config(APP, {RELOAD_OPTION: value})
                finally:
                    model.auto_settle = True
                with recorded() as runs:
                    model.settle()
                for r in runs:
                    if r.event == "config-changed" and r.unit in by_unit:
                        measured[by_unit[r.unit]].append(r)
                    else:
                        follow.append(r)
                applied.append(self._wait_applied(str(value), start))
                pending.append(self._pending_restarts())
        self.followups["config-changed-reload"] = _followups(follow)
        result: dict[str, Any] = {"option": RELOAD_OPTION, "parameter": RELOAD_PARAMETER}
        result |= {label: summarise(runs) | {"unit": units[label]} for label, runs in measured.items()}  # fmt: skip
        result["applied_on_every_unit_s"] = {
            "median": round(statistics.median(applied), 2),
            "max": round(max(applied), 2),
        }
        result["units_pending_restart"] = max(pending)
        return result

    def _wait_applied(self, value: str, since: float, timeout: float = 180) -> float:
        """Seconds from `since` until every unit's PostgreSQL shows the value."""
        query = "SELECT setting FROM pg_settings WHERE name = %s"
        units = [u.name for u in self.b.status().app_units(APP)]
        while time.monotonic() - since < timeout:
            if all(self._sql(u, query, (RELOAD_PARAMETER,)) == value for u in units):
                return time.monotonic() - since
            time.sleep(0.2)
        raise TimeoutError(f"{RELOAD_PARAMETER}={value} not applied everywhere in {timeout} s")

    def _pending_restarts(self) -> int:
        units = [u.name for u in self.b.status().app_units(APP)]
        query = "SELECT count(*) FROM pg_settings WHERE pending_restart"
        return sum(int(self._sql(u, query)) > 0 for u in units)

    def add_clients(self, first: int, last: int) -> float:
        """Deploy client applications first..last-1, each related; wait until all are served."""
        start = time.monotonic()
        for i in range(first, last):
            name = f"client-{i}"
            self.b.deploy(name, charm="app-requirer", config={"database-name": f"db_{i}"})
            self.b.integrate(APP, f"{name}:database")
        names = [f"client-{i}" for i in range(last)]

        def served(status: Any) -> bool:
            units = [status.app_units(n) for n in names]
            return all(u and u[0].workload_status == "active" for u in units)

        self.b.wait_for(served, timeout=3600, what=f"{last} clients served")
        return round(time.monotonic() - start, 2)


def run(clients_steps: Iterable[int] = CLIENT_STEPS) -> dict[str, Any]:
    """Every measurement on a fresh deployment; the figures."""
    steps = sorted(set(clients_steps))
    started = time.monotonic()
    figures: dict[str, Any] = {
        "units": UNITS,
        "repeats": REPEATS,
        "host": platform.node(),
        "cpus": os.cpu_count() or 0,
        # The machine may be shared: wall times mean little without the load they ran under.
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    with LocalBackend() as b:
        bench = Bench(b)
        bench.deploy()
        units = {"leader": bench.leader(), "non_leader": bench.non_leader()}
        figures["roles"] = bench.roles()
        hooks: dict[str, Any] = {}
        hooks["update-status"] = bench.fire("update-status", units, "update-status")
        hooks["config-changed-noop"] = bench.fire("config-changed-noop", units, "config-changed")
        # Juju queues config-changed on every unit: each one is measured, none is a follow-up.
        third = next(u for u in bench.roles() if u not in units.values())
        hooks["config-changed-reload"] = bench.config_reload(units | {"other_non_leader": third})
        clients: dict[str, Any] = {}
        setup: dict[str, float] = {}
        deployed = 0
        for step in steps:
            setup[str(step)] = bench.add_clients(deployed, step)
            deployed = step
            # After the clients' own hooks, one round with nothing new, as in `deploy`.
            b.model.update_status()
            units = {"leader": bench.leader(), "non_leader": bench.non_leader()}
            clients[str(step)] = bench.fire(
                f"update-status-{step}-clients", units, "update-status"
            )
            if step == steps[0]:
                floor = bench.fire(
                    "requirer-update-status", {"unit": "client-0/0"}, "update-status"
                )
                figures["requirer_update_status"] = floor["unit"]
        hooks["update-status-with-clients"] = clients
        figures |= bench.figures
        figures["hooks"] = hooks
        figures["clients_setup_s"] = setup
        figures["followup_hooks"] = bench.followups
        figures["postgresql_restarted"] = bench.restarted
        figures["final_roles"] = bench.roles()
    figures["total_s"] = round(time.monotonic() - started, 1)
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def main(output: Path | None = None, clients: Iterable[int] = CLIENT_STEPS) -> int:
    """Run, print the JSON (last line) and optionally write it to a file."""
    figures = run(clients)
    programs.report(figures, output)
    return 0
