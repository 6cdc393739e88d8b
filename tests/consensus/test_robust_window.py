"""The default plausibility check (the compact rank test): its rule, its integer determinism, and a PoEf round
that runs it on every coordinator and committee member."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.consensus.plausibility import Implausible, Plausibility, RobustWindowCheck
from gridledger.consensus.poef import Coordinator, Validator
from gridledger.ledger.block import Vote, make_block
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.reading import MAX_WIDE, ReadingValues
from gridledger.tiers.hierarchy import TierChain, build_neighbourhood

from .support import METERS, commit_minutes, minute_time, readings

CHECK = RobustWindowCheck()
energy = st.integers(0, MAX_WIDE)


def history(*wh: int, production: int = 0) -> list[ReadingValues]:
    return [ReadingValues(w, production) for w in wh]


def flagged(wh: int, past: list[ReadingValues], production: int = 0) -> bool:
    return CHECK.check(ReadingValues(wh, production), past) is not None


def test_it_is_the_default_plug_in_of_coordinators_and_validators(nan):
    assert isinstance(CHECK, Plausibility) and CHECK.name == "robust-window" and CHECK.window == 12
    coordinator = Coordinator(nan.coordinator.replica, nan.coordinator.key, nan.coordinator.content)
    validator = Validator(next(iter(nan.members.values())).key, nan.replica)
    assert coordinator.plausibility == validator.plausibility == CHECK


def test_no_verdict_without_enough_history():
    assert CHECK.check(ReadingValues(10_000), history(10, 10)) is None
    assert flagged(10_000, history(10, 10, 10))


def test_a_rise_beyond_the_appliance_step_the_doubling_and_the_spread_is_flagged():
    quiet = history(2, 3, 2, 4, 2, 3, 2, 2, 3, 2, 2, 3)  # median 2 Wh
    assert not flagged(47, quiet) and flagged(48, quiet)  # the 45 Wh step above the median
    high = history(*[1_000] * 12)
    assert not flagged(2_000, high) and flagged(2_001, high)  # more than doubling
    cycling = history(*[0, 40] * 6)  # a pump cycling on and off: median 0, upper-quartile deviation 40
    assert not flagged(120, cycling) and flagged(121, cycling)  # 3 × 40
    assert flagged(20, quiet, production=200)  # production is checked the same way


def test_only_the_last_window_counts():
    past = history(*([5_000] * 20), *([20] * 12))
    assert not flagged(20, past) and flagged(5_000, past)


def test_a_burst_of_spikes_does_not_widen_its_own_band():
    past = history(2, 3, 2, 4, 2, 3, 2, 2, 3)
    for _ in range(3):
        spike = ReadingValues(500)
        assert CHECK.check(spike, past) is not None
        past = [*past, spike][-CHECK.window :]


def test_a_meter_that_suddenly_reads_nothing_is_flagged():
    steady = history(4, 5, 3, 6, 4, 5, 4, 3, 5, 4, 6, 4)
    verdict = CHECK.check(ReadingValues(0, 0), steady)
    assert isinstance(verdict, Implausible) and "zero reading" in verdict.reason
    assert not flagged(0, history(4, 5, 3, 2, 4, 5, 4, 3, 5, 4, 6, 4))  # a 2 Wh minute: the load can vanish
    assert not flagged(0, history(*[4] * 11, 5, production=1))  # a PV home whose panels cover its load
    assert not flagged(0, steady, production=30)  # the sun came out


@given(st.lists(st.tuples(energy, energy), min_size=3, max_size=20))
def test_the_window_median_is_always_plausible(past):
    values = [ReadingValues(c, p) for c, p in past]
    window = values[-CHECK.window :]

    def median(field):
        return sorted(getattr(v, field) for v in window)[(len(window) - 1) // 2]

    assert CHECK.check(ReadingValues(median("consumption_wh"), median("production_wh")), values) is None


@given(st.lists(energy, min_size=3, max_size=14), st.integers(1, MAX_WIDE), st.integers(0, 1_000))
def test_above_zero_the_verdict_is_monotone_in_the_rise(past, x, more):
    values = history(*past)
    if flagged(x, values) and x + more <= MAX_WIDE:
        assert flagged(x + more, values)


@given(st.lists(st.tuples(energy, energy), min_size=0, max_size=14), energy, energy)
def test_the_verdict_is_a_function_of_integer_inputs_over_the_whole_range(past, consumption, production):
    values = [ReadingValues(c, p) for c, p in past]
    reading = ReadingValues(consumption, production)
    verdict = CHECK.check(reading, values)
    assert verdict == CHECK.check(reading, tuple(values)) == RobustWindowCheck().check(reading, list(values))
    assert verdict is None or verdict.detector == "robust-window"


# ------------------------------------------------------------------ in a round
@pytest.fixture
def robust() -> Iterator[TierChain]:
    node = build_neighbourhood(METERS, plausibility=RobustWindowCheck())
    yield node
    node.close()


def test_every_committee_member_runs_it_and_alarms_ride_with_their_readings(robust):
    commit_minutes(robust, range(6), wh=10)
    spike, bypass = "MI-00002", "MI-00005"
    for tx in readings(robust, 6, {spike: 500, bypass: 0}):
        robust.coordinator.submit(tx)
    block = robust.coordinator.propose(minute_time(6))
    alarms = {tx.subject: tx for tx in block.transactions if isinstance(tx, Alarm)}
    subjects = {tx.txid: tx.member for tx in block.transactions if tx.txid in alarms}
    assert sorted(subjects.values()) == sorted(robust.members[m].index for m in (spike, bypass))
    assert {(a.code, a.detector) for a in alarms.values()} == {(AlarmCode.IMPLAUSIBLE_READING, "robust-window")}
    # the same block without the alarms (a coordinator hiding them): every member recomputes the check, refuses
    h = block.header
    hidden = tuple(tx for tx in block.transactions if not isinstance(tx, Alarm))
    silent = make_block(h.chain_id, h.height, h.prev_hash, h.time, hidden, robust.coordinator.key)
    committee = robust.coordinator.committee(block)
    for _, pk in committee.members:
        verdict = robust.validators[pk].validate(silent, robust.coordinator.disclose(silent, pk))
        assert isinstance(verdict, Reject) and verdict.code == "bad-poef-alarm-missing"
    for _, pk in committee.members:
        assert isinstance(robust.validators[pk].validate(block, robust.coordinator.disclose(block, pk)), Vote)
