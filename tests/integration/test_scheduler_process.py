"""The backup schedule on real parts: Debian's crontab parser, and cron run by Pebble in a pod.

The first tests ask Debian's own `crontab` (the parser cron loads crontabs with) about every
expression the charm accepts. The last one runs the image's `cron` as the charm's Pebble service
in a substrate pod, on the real clock, and waits for the custom notice at the next minute (up to
about a minute): the only wait of this kind.
"""

from __future__ import annotations

import datetime as dt
import pwd
import random
import subprocess
import time
from pathlib import Path

import ops
import pytest

from substrate.host import pods
from substrate.pebble import entrypoint
from workload import layout, scheduler

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc


def crontab_accepts(directory: Path, crontabs: list[str]) -> list[bool]:
    """Whether Debian's `crontab` installs each text as the workload user's crontab.

    Run in a private mount namespace, over an empty spool of its own: the host's is untouched.
    """
    for index, text in enumerate(crontabs):
        (directory / f"{index}.cron").write_text(text)
    script = (
        "set -e\n"
        f"mount -t tmpfs -o mode=1730 spool {pods.CRON_SPOOL}\n"
        f"for i in $(seq 0 {len(crontabs) - 1}); do\n"
        f'  if crontab -u {layout.WORKLOAD_USER} "{directory}/$i.cron" 2>/dev/null; '
        "then echo yes; else echo no; fi\n"
        "done\n"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [answer == "yes" for answer in result.stdout.split()]


def line(expression: str) -> str:
    return f"{expression} true\n"


# Expressions cron accepts but reads otherwise than cronsim (or than a reader would): refused.
CRON_TAKES_THEM_DIFFERENTLY = [
    "0 0 * * 1#2",  # cron: Mondays (the rest of the item is skipped); cronsim: the 2nd Monday
    "*/5-10 * * * *",  # cron: every 5 minutes; cronsim refuses it
    "0 0 * * 7-1",  # cron: no day at all
    "0 0 30 2 *",  # never fires
    "@daily",
    "@reboot",
    "*/100 * * * *",  # cron: minute 0 only
]
# Expressions cron refuses.
CRON_REFUSES_THEM = [
    "5/10 * * * *",  # cronsim would read 5-59/10
    "0 0 * * mon/2",
    "0 0 L * *",
    "0 0 * * 5L",
    "0 0 ? * *",
    "0 0 1 1 * *",
    "60 * * * *",
    "0 0 0 * *",
    "0 0 * 0 *",
    "* * * * 8",
    "0 0 * * sunday",
    "*/0 * * * *",
    "0,,1 * * * *",
]


def test_debian_crontab_agrees_with_the_known_cases(tmp_path: Path) -> None:
    cases = CRON_TAKES_THEM_DIFFERENTLY + CRON_REFUSES_THEM
    accepted = crontab_accepts(tmp_path, [line(expression) for expression in cases])
    assert dict(zip(cases, accepted, strict=True)) == {
        **dict.fromkeys(CRON_TAKES_THEM_DIFFERENTLY, True),
        **dict.fromkeys(CRON_REFUSES_THEM, False),
    }
    assert all(scheduler.validate(expression) for expression in cases)


# Per field: its bounds and the names cron takes for it.
FIELDS = [
    (0, 59, []),
    (0, 23, []),
    (1, 31, []),
    (1, 12, ["jan", "Feb", "MAR", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    (0, 7, ["sun", "Mon", "TUE", "wed", "thu", "fri", "sat"]),
]
JUNK = ["L", "5L", "1#2", "?", "W", "", "-", "1-", "*/", "+1", "sunday", "xyz", "0x1", "005"]


def item(rng: random.Random, low: int, high: int, names: list[str], clean: bool) -> str:
    """A field item in the forms both cron and cronsim read alike, or (not clean) maybe not."""
    if not clean and rng.random() < 0.15:
        return rng.choice(JUNK)
    stretch = int(not clean and rng.random() < 0.15)  # one past either bound
    a, b = sorted(rng.randint(low - stretch, high + stretch) for _ in range(2))
    if not clean and rng.random() < 0.15:
        a, b = b, a
    first, last = (
        names[n - low] if names and 0 <= n - low < len(names) and rng.random() < 0.3 else str(n)
        for n in (a, b)
    )
    step = str(rng.randint(1, high - low + 1) if clean else rng.choice([0, 2, 5, 61]))
    forms = ["*", f"*/{step}", first, f"{first}-{last}", f"{first}-{last}/{step}"]
    return rng.choice(forms if clean else [*forms, f"{first}/{step}"])


def random_expressions(count: int) -> list[tuple[str, bool]]:
    """(expression, clean): clean ones use only forms the charm should accept."""
    rng = random.Random(20261203)
    expressions: list[tuple[str, bool]] = []
    for _ in range(count):
        clean = rng.random() < 0.5
        fields = [
            ",".join(item(rng, *spec, clean) for _ in range(rng.choice([1, 1, 1, 2, 3])))
            for spec in FIELDS
        ]
        if not clean and rng.random() < 0.1:  # a field too many or too few
            fields = [*fields, "*"] if rng.random() < 0.5 else fields[:4]
        expressions.append((" ".join(fields), clean))
    return expressions


def test_every_expression_the_charm_accepts_is_one_cron_accepts(tmp_path: Path) -> None:
    generated = random_expressions(800)
    expressions = [expression for expression, _ in generated]
    errors = [scheduler.validate(expression) for expression in expressions]
    by_cron = crontab_accepts(tmp_path, [line(expression) for expression in expressions])
    wrongly_accepted = [
        expression
        for expression, error, cron in zip(expressions, errors, by_cron, strict=True)
        if error is None and not cron
    ]
    assert wrongly_accepted == []
    # Nor does the charm refuse the forms both read alike, unless the schedule never fires.
    wrongly_refused = [
        (expression, error)
        for (expression, clean), error in zip(generated, errors, strict=True)
        if clean and error is not None and "never fires" not in error
    ]
    assert wrongly_refused == []
    # The sample is not one-sided: each judge accepts some and refuses some.
    assert 200 < errors.count(None) < len(expressions) - 200
    assert 0 < by_cron.count(False) < len(expressions) - errors.count(None)


def test_the_rendered_crontab_is_one_cron_installs(tmp_path: Path) -> None:
    crontabs = [
        scheduler.files(full, incremental)[scheduler.CRONTAB_PATH][0]
        for full, incremental in [
            ("0 2 * * 0", "0 3 * * mon-sat"),
            ("*/15 * * * *", ""),
            ("", "0 0 1,15 jan-jun 5"),
            ("", ""),
        ]
    ]
    assert crontab_accepts(tmp_path, crontabs) == [True] * len(crontabs)
    # A single stray line would make cron ignore the whole crontab.
    assert crontab_accepts(tmp_path, [crontabs[0] + "0 0 * * 1#2 true\nnot a job\n"]) == [False]


# --- cron under Pebble, in a pod ----------------------------------------------------------------


def next_minute(margin: float) -> dt.datetime:
    """The next minute boundary at least `margin` seconds away."""
    now = time.time()
    boundary = (int(now + margin) // 60 + 1) * 60
    return dt.datetime.fromtimestamp(boundary, UTC)


def test_cron_in_a_pod_notifies_the_charm_at_the_minute(
    substrate: pods.Substrate, tmp_path: Path
) -> None:
    pod = substrate.add_pod("cron-0")
    # The pod reads no host crontab: its system crontab and /etc/cron.d are its own, empty.
    assert pod.exec(["ls", "-A", pods.CRON_DIR]).stdout == ""
    crontab = pod.exec(["cat", pods.CRON_TABLE]).stdout.splitlines()
    assert [entry for entry in crontab if entry and not entry.startswith("#")] == []
    assert pod.exec(["ls", "-A", pods.CRON_SPOOL]).stdout == ""
    # The container's own zone is not UTC (an image's TZ); the service must still run in UTC.
    log = tmp_path / "pebble.log"
    socket = entrypoint.start(pod, log, environment={"TZ": "Asia/Kolkata"}).socket
    client = ops.pebble.Client(socket_path=str(socket))
    for directory in layout.WORKLOAD_DIRS:  # as the charm makes them
        pod.make_dir(directory, mode=0o700, owner="postgres", group="postgres")

    # A full and an incremental backup both at exactly the next minute in UTC (in Kolkata it is
    # 5:30 later): at that minute the full one alone may be asked for. Neither may fire at any
    # other minute: cron, started in the middle of a minute, may run that minute's jobs too, so
    # an every-minute schedule would make the count depend on when the test starts.
    due = next_minute(margin=10.0)
    full = incremental = f"{due.minute} {due.hour} * * *"
    for path, (text, mode) in scheduler.files(full, incremental).items():
        client.push(
            path, text, make_dirs=True, permissions=mode, user="postgres", group="postgres"
        )
    layer: ops.pebble.LayerDict = {"services": {scheduler.SERVICE: scheduler.service(True)}}
    client.add_layer("backups", layer, combine=True)
    client.replan_services()
    assert client.get_services([scheduler.SERVICE])[0].is_running()

    def notices() -> list[ops.pebble.Notice]:
        return client.get_notices(keys=[scheduler.NOTICE], users=ops.pebble.NoticesUsers.ALL)

    deadline = due.timestamp() + 20
    while not notices() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(max(0.0, due.timestamp() + 8 - time.time()))  # room for a second notice
    found = notices()
    assert found, f"no notice by {due + dt.timedelta(seconds=20)}; Pebble's log: {log.read_text()}"
    [notice] = found
    assert notice.last_data == {"kind": "full", "at": due.isoformat()}
    assert notice.occurrences == 1  # the incremental job at the same minute stayed silent
    assert due <= notice.last_repeated < due + dt.timedelta(seconds=5)
    assert notice.user_id == pwd.getpwnam(layout.WORKLOAD_USER).pw_uid  # cron ran it as postgres
    assert scheduler.parse_notice(notice.last_data) == ("full", due)
    assert not pod.host_path(scheduler.LOG_PATH).exists()  # no failure to report

    # No schedule (or another unit leads): the crontab loses its jobs, and cron must be stopped
    # explicitly, as Pebble restarts a running service whose definition changed whatever its
    # startup says.
    for path, (text, mode) in scheduler.files("", "").items():
        client.push(path, text, permissions=mode, user="postgres", group="postgres")
    layer = {"services": {scheduler.SERVICE: scheduler.service(False)}}
    client.add_layer("backups", layer, combine=True)
    client.replan_services()
    assert client.get_services([scheduler.SERVICE])[0].is_running()
    client.stop_services([scheduler.SERVICE])
    assert not client.get_services([scheduler.SERVICE])[0].is_running()
    assert "cron" not in [Path(f"/proc/{pid}/comm").read_text().strip() for pid in pod.pids()]
