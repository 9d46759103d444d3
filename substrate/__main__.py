"""Command line of the local substrate: `python -m substrate demo [--keep]`, `bench`, `bench-*`."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

# The charm's modules import each other by their names in src/ and lib/, as Juju's dispatch does.
_REPO = Path(__file__).resolve().parent.parent
for _sub in ("src", "lib"):
    if str(_REPO / _sub) not in sys.path:
        sys.path.insert(0, str(_REPO / _sub))


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand."""
    parser = argparse.ArgumentParser(prog="python -m substrate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="deploy 3 units, write and read a row, show status")
    demo.add_argument("--keep", action="store_true", help="keep it running until Ctrl-C")
    demo.add_argument("--units", type=int, default=3)
    bench = sub.add_parser("bench", help="bootstrap, failover and switchover figures as JSON")
    bench.add_argument("--output", type=Path, help="also write the JSON to this file")
    bench_backup = sub.add_parser(
        "bench-backup", help="backup and restore through the charm against pgBackRest directly"
    )
    bench_backup.add_argument("--scale", type=int, default=10, help="pgbench scale (~15 MB each)")
    bench_backup.add_argument("--output", type=Path, help="also write the JSON to this file")
    bench_hooks = sub.add_parser(
        "bench-hooks", help="wall time and Pebble/Patroni/SQL calls of single hooks, as JSON"
    )
    bench_hooks.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 10, 50],
        help="client application counts to measure update-status with (default 1,10,50)",
    )
    bench_hooks.add_argument("--output", type=Path, help="also write the JSON to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    # What the test suite's configuration ignores too (pyproject.toml): the libraries' own noise.
    warnings.filterwarnings("ignore", message=r"The '\w+' attribute with value", module="pydantic")
    warnings.filterwarnings(
        "ignore", message="JujuVersion.from_environ", category=DeprecationWarning
    )
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Each hook's ops sets the root logger to DEBUG; only our own handler decides what shows.
    for handler in logging.root.handlers:
        handler.setLevel(level)
    if args.command == "demo":
        from substrate.programs import demo as demo_module  # noqa: PLC0415 - after sys.path is set

        return demo_module.main(keep=args.keep, units=args.units)
    if args.command == "bench-backup":
        from substrate.programs import bench_backup  # noqa: PLC0415 - after sys.path is set

        return bench_backup.main(scale=args.scale, output=args.output)
    if args.command == "bench-hooks":
        from substrate.programs import bench_hooks  # noqa: PLC0415 - after sys.path is set

        return bench_hooks.main(output=args.output, clients=args.clients)
    from substrate.programs import bench as bench_module  # noqa: PLC0415 - after sys.path is set

    return bench_module.main(output=args.output)


if __name__ == "__main__":
    sys.exit(main())
