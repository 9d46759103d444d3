"""The writer report's outage arithmetic, on hand-made ack times."""

from __future__ import annotations

from array import array

import pytest

from substrate.fixtures.writer import WriterReport


def report(times: list[float]) -> WriterReport:
    return WriterReport(
        table="t", acked=len(times), acked_ranges=((1, len(times)),), uncertain=(), rejected=0,
        errors=(), errors_dropped=0, started=0.0, stopped=times[-1], first_ack=times[0],
        last_ack=times[-1], first_ack_wall=None, last_ack_wall=None, outage_threshold_s=0.5,
        outages=(), max_outage_s=0.0, longest_block_s=0.0, sessions=(), ack_times=array("d", times),
    )  # fmt: skip


ACKS = [0.0, 0.1, 0.2, 0.3, 3.3, 3.4, 3.5]  # a 3 s gap after 0.3


@pytest.mark.parametrize(
    ("t0", "t1", "expected"),
    [
        (0.15, 0.16, 0.1),  # no fault in the window: one interval
        (0.25, 0.26, 3.0),  # the fault started just before the gap
        (0.05, 0.26, 3.0),  # injected earlier, the writer still acked twice before the gap
        (0.05, 3.35, 3.0),  # the injection returned after writes resumed (a blocking switchover)
        (1.00, 1.00, 3.0),  # inside the gap
    ],
)
def test_outage_during_finds_the_gap_wherever_it_falls(t0: float, t1: float, expected: float):
    assert report(ACKS).outage_during(t0, t1) == pytest.approx(expected)


def test_outage_during_is_unknown_without_acks_on_both_sides():
    assert report(ACKS).outage_during(-1.0, 0.5) is None
    assert report(ACKS).outage_during(3.0, 3.6) is None


def test_outage_around_a_single_instant():
    assert report(ACKS).outage_around(1.0) == pytest.approx(3.0)
