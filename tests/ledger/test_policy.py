"""The DSO policy timeline: the policy in force at slot t is the latest one whose effective slot ≤ t.

"Latest" orders by effective slot, then by commit order; each element (a meter's status, a meter's limits, the
prices) follows its own timeline, so a policy that only bans a meter leaves the prices in force. The property
compares ``PolicyTimeline`` with a brute-force scan over random policy sequences, and the chain's answers
(issues accepted or refused, prices) with the same brute force after the policies went through blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gridledger.chain import Chain
from gridledger.ledger.assets import EPA, Output
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.policy import AUTHORIZED, BANNED, UNKNOWN, PolicyTimeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Net

METERS = ("A", "B", "C")
KEYS = {m: [KeyPair.from_secret(f"{m}{i}") for i in range(2)] for m in METERS}


def brute_force(policies: list[DsoPolicy], slot: int) -> dict:
    """Per element, the value of the last policy (by effective slot, then commit order) with time ≤ slot."""

    def latest(values):  # values: (time, seq, value) of the policies that set this element
        in_force = [v for v in values if v[0] <= slot]
        return max(in_force, key=lambda v: (v[0], v[1]))[2] if in_force else None

    answer = {
        "prices": latest([(p.effective_slot, i, p.prices) for i, p in enumerate(policies) if p.prices is not None])
    }
    for m in METERS:
        status = [(p.effective_slot, i, k) for i, p in enumerate(policies) for mm, k in p.authorize if mm == m]
        status += [(p.effective_slot, i, BANNED) for i, p in enumerate(policies) if m in p.ban]
        value = latest(status)
        answer[m] = (
            (UNKNOWN, None) if value is None else (BANNED, None) if value == BANNED else (AUTHORIZED, value)
        )
        answer[m, "limits"] = latest(
            [(p.effective_slot, i, lim) for i, p in enumerate(policies) for lim in p.limits if lim.meter == m]
        )
    return answer


def timeline_answer(tl: PolicyTimeline, slot: int) -> dict:
    answer = {"prices": tl.prices(slot)}
    for m in METERS:
        answer[m] = tl.status(m, slot)
        answer[m, "limits"] = tl.limits(m, slot)
    return answer


@st.composite
def policies(draw, nonce: int, time: st.SearchStrategy[int]) -> DsoPolicy:
    """A random policy touching random meters (never both authorizing and banning one meter)."""
    touched = draw(st.lists(st.sampled_from(METERS), unique=True, max_size=3))
    authorize, ban = [], []
    for m in touched:
        if draw(st.booleans()):
            authorize.append((m, draw(st.sampled_from(KEYS[m])).public))
        else:
            ban.append(m)
    limits = [
        MeterLimits(m, draw(st.integers(0, 3_000)), draw(st.integers(0, 3_000)), 0)
        for m in draw(st.lists(st.sampled_from(METERS), unique=True, max_size=2))
    ]
    prices = draw(st.none() | st.tuples(st.integers(0, 300), st.integers(0, 300)))
    if not (authorize or ban or limits or prices):
        prices = (1, 1)
    return DsoPolicy(nonce, draw(time), prices, tuple(authorize), tuple(limits), tuple(ban))


@st.composite
def policy_sequences(draw) -> list[DsoPolicy]:
    n = draw(st.integers(0, 8))
    return [draw(policies(i + 1, st.integers(0, 12))) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(policy_sequences())
def test_timeline_matches_brute_force(seq: list[DsoPolicy]) -> None:
    tl = PolicyTimeline()
    for p in seq:
        tl.add(p)
    for slot in range(15):
        assert timeline_answer(tl, slot) == brute_force(seq, slot), f"slot {slot}"
    assert tl.nonce == (seq[-1].nonce if seq else 0)


@settings(max_examples=100, deadline=None)
@given(policy_sequences(), st.integers(0, 8))
def test_pop_undoes_the_last_policies(seq: list[DsoPolicy], k: int) -> None:
    """Rolling back a block pops its policies: the timeline is as if they had never been added."""
    k = min(k, len(seq))
    tl = PolicyTimeline()
    for p in seq:
        tl.add(p)
    for _ in range(k):
        tl.pop()
    for slot in range(15):
        assert timeline_answer(tl, slot) == brute_force(seq[: len(seq) - k], slot)


# --------------------------------------------------------------------------- on the chain


def issue(net: Net, meter: str, key: KeyPair, nonce: int, slot: int, power: int = 100) -> MeterIssue:
    return MeterIssue(meter, nonce, (Output(EPA(power, slot, slot + 1), key.address),)).signed(
        net.chain_id, key
    )


def try_issue(net: Net, tx: MeterIssue) -> str:
    """Append a block with ``tx`` (bypassing the meter's own checks); 'ok' or the reject code."""
    try:
        net.append(tx)
    except Reject as e:
        return e.code
    return "ok"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), min_size=1, max_size=6), st.data())
def test_chain_enforces_the_policy_in_force(
    new_net: Callable[..., Net], schedule: list[tuple[int, int]], data: st.DataObject
) -> None:
    """Policies committed in slot order with random effective times; at every slot each meter's issue is
    accepted exactly when the brute force says it is authorized (with that key) and within its limit; the
    prices agree too, and so does the chain reopened from its store."""
    net = new_net(funded=False)
    committed = list(net.state.policy.policies)  # the fixture's first policy (prices from slot 0)
    slot = 0
    nonces = dict.fromkeys(METERS, 0)
    issued: dict[tuple[str, int], int] = {}  # W of EPA accepted per (meter, slot)
    for gap, lead in schedule:
        slot += gap
        net.at_slot(slot)
        p = data.draw(policies(net.dso.nonce + 1, st.just(slot + lead)))
        net.dso.nonce += 1
        net.commit(p.signed(net.chain_id, net.dso.key))
        committed.append(p)
        expected = brute_force(committed, slot)
        assert timeline_answer(net.state.policy, slot) == expected
        for m in METERS:
            key = data.draw(st.sampled_from(KEYS[m]), label=f"key of {m}")
            nonces[m] += 1
            status, right_key = expected[m]
            cap = expected[m, "limits"].max_epa_w if expected[m, "limits"] else 0
            want = {
                BANNED: "bad-issue-meter-banned",
                UNKNOWN: "bad-issue-meter-unknown",
            }.get(status, "ok" if key.public == right_key else "bad-issue-signature")
            if want == "ok" and issued.get((m, slot), 0) + 100 > cap:
                want = "bad-issue-over-limit"
            got = try_issue(net, issue(net, m, key, nonces[m], slot))
            assert got == want, f"meter {m} at slot {slot}: {expected[m]}, limit {cap}"
            event(f"issue: {got}")
            if got == "ok":
                issued[m, slot] = issued.get((m, slot), 0) + 100
    reopened = Chain.open(net.store)
    for t in range(slot + 6):
        assert timeline_answer(reopened.state.policy, t) == brute_force(committed, t)


def test_prices_change_between_slots(bare_net: Net) -> None:
    net = bare_net
    net.commit(net.dso.policy(3, prices=(150, 60)))
    net.commit(net.dso.policy(2, ban=["MI1"]))  # touches no prices
    assert [net.state.policy.prices(t) for t in range(5)] == [(120, 80)] * 3 + [(150, 60)] * 2


def test_later_effective_time_wins_over_later_commit(bare_net: Net) -> None:
    """Committed second, effective earlier: in force until the first one's time; a tie goes to the later."""
    net = bare_net
    net.commit(net.dso.policy(10, prices=(1, 1)))
    net.commit(net.dso.policy(5, prices=(2, 2)))
    net.commit(net.dso.policy(10, prices=(3, 3)))
    assert [net.state.policy.prices(t) for t in (4, 5, 9, 10, 11)] == [
        (120, 80),
        (2, 2),
        (2, 2),
        (3, 3),
        (3, 3),
    ]


def test_ban_and_reauthorization_with_a_new_key(bare_net: Net) -> None:
    net, new_key = bare_net, KeyPair.from_secret("MI1-replacement")
    old_key = net.meters["MI1"].key
    net.commit(net.dso.policy(2, ban=["MI1"]))
    net.commit(net.dso.policy(4, authorize={"MI1": new_key.public}))
    net.at_slot(1)
    assert try_issue(net, issue(net, "MI1", old_key, 1, 1)) == "ok"
    net.at_slot(2)
    assert try_issue(net, issue(net, "MI1", old_key, 2, 2)) == "bad-issue-meter-banned"
    net.at_slot(3)
    assert try_issue(net, issue(net, "MI1", new_key, 3, 3)) == "bad-issue-meter-banned"
    net.at_slot(4)
    assert try_issue(net, issue(net, "MI1", old_key, 4, 4)) == "bad-issue-signature"
    assert try_issue(net, issue(net, "MI1", new_key, 5, 4)) == "ok"
    # the limits set at slot 0 are still in force: the re-authorization did not touch them
    assert net.state.policy.limits("MI1", 4).max_epa_w == 5_000


def test_policy_effective_in_the_current_slot_is_accepted(bare_net: Net) -> None:
    net = bare_net.at_slot(7)
    net.commit(net.dso.policy(7, prices=(99, 9)))
    assert net.state.policy.prices(7) == (99, 9) and net.state.policy.prices(6) == (120, 80)
    with pytest.raises(Reject, match="bad-policy-stale"):
        net.append(net.dso.policy(6, prices=(1, 1)))
