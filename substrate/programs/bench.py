"""Benchmarks on the local substrate: bootstrap, failovers and switchover, measured by a writer.

Prints one JSON object as its last output. Write outage is measured from the writer's side: the
last acknowledged write before the fault to the first one after it. Every acknowledged id is
checked afterwards on every member.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

from substrate import programs
from substrate.backends import backend
from substrate.backends.local import LocalBackend
from substrate.fixtures import verify, writer
from substrate.programs.demo import APP, roles_settled

UNITS = 3


def _primary(b: LocalBackend) -> str:
    unit = next(u.name for u in b.status().app_units(APP) if u.leader)
    return str(b.run_action(unit, "get-primary")["primary"])


def _settle(b: LocalBackend, units: int = UNITS) -> None:
    b.wait_for(roles_settled(APP, units), timeout=300, what="a healthy cluster")


def _fault(w: writer.ContinuousWriter, act: Any) -> tuple[float, float | None]:
    """Run a fault, wait for writes to resume; (seconds to first ack after, outage)."""
    start = time.monotonic()
    act()
    landed = time.monotonic()
    if not w.wait_for_ack_after(landed, timeout=180):
        raise backend.BackendError("writes did not resume within 180 s")
    # The outage is only known once the gap has closed, which it now has.
    return time.monotonic() - start, w.report().outage_during(start, landed)


def run() -> dict[str, Any]:
    """Run every measurement on a fresh 3-unit deployment and return the figures."""
    figures: dict[str, Any] = {"units": UNITS, "host": platform.node(), "cpus": _cpus()}
    with LocalBackend() as b:
        t0 = time.monotonic()
        b.deploy(APP, units=UNITS)
        _settle(b)
        figures["bootstrap_s"] = round(time.monotonic() - t0, 2)
        password = str(b.run_action(f"{APP}/0", "get-password")["password"])
        w = writer.ContinuousWriter(
            host=b.service_address(f"{APP}-primary"),
            user="operator",
            password=password,
            dbname="postgres",
            table="bench_writes",
        )
        w.start()
        w.wait_for_acks(50, timeout=30)

        old = _primary(b)
        _, outage = _fault(
            w,
            lambda: (
                b.kill(old, "patroni", backend.Signal.SIGKILL),
                b.kill(old, "postgres", backend.Signal.SIGKILL),
            ),
        )
        figures["failover_sigkill_outage_s"] = _round(outage)
        figures["failover_sigkill_new_primary"] = _primary(b) != old
        _settle(b)

        # Unit messages follow Patroni at the units' next hook: wait until one shows the role.
        settled = b.wait_for(
            lambda s: any(u.message == "sync standby" for u in s.app_units(APP)),
            timeout=120,
            what="a unit showing sync standby",
        )
        standby = next(u.name for u in settled.app_units(APP) if u.message == "sync standby")
        _, outage = _fault(
            w, lambda: b.run_action(standby, "promote-to-primary", {"scope": "unit"})
        )
        figures["switchover_outage_s"] = _round(outage)
        _settle(b)

        lost = _primary(b)
        _, outage = _fault(w, lambda: b.delete_pod(lost, recreate=False, force=True))
        figures["failover_pod_loss_outage_s"] = _round(outage)
        # The lost unit's last message ("primary") stays in the status: no hook of it runs.
        b.wait_for(
            lambda s: sum(u.message == "primary" for u in s.app_units(APP) if u.name != lost) == 1,
            timeout=120,
            what="a primary among the survivors",
        )
        w.wait_for_acks(w.acked_count + 100, timeout=60)
        report = w.stop()
        survivors = [u.address for u in b.status().app_units(APP) if u.name != lost]
        result = verify.verify_acked(
            report,
            survivors,
            wait_for_catchup=60,
            user="operator",
            password=password,
            dbname="postgres",
        )
        figures |= {
            "acked_writes": report.acked,
            "uncertain_writes": len(report.uncertain),
            "acked_lost": result.acked_lost,
            "writer_interval_s": w.interval,
            "outages_s": [round(o.duration_s, 2) for o in report.outages],
        }
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _cpus() -> int:
    import os  # noqa: PLC0415

    return os.cpu_count() or 0


def main(output: Path | None = None) -> int:
    """Run the benchmark and print its JSON (the last line of output)."""
    figures = run()
    programs.report(figures, output)
    return 0 if figures.get("acked_lost") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
