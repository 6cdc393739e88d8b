"""DSO prices replicated down every tier, and the paper's fake-price scenario (Olivares-Rojas et al. 2023, Fig. 13)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridledger.consensus.policy_sync import StateView, check_price_signal
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.petra.dso import DSO
from gridledger.tiers.audit import check_prices
from gridledger.tiers.hierarchy import Hierarchy

PRICE = (120, 80)


@pytest.fixture
def tiers() -> Iterator[Hierarchy]:
    h = Hierarchy(fans=1, nans=1, homes=1, appliances=1)
    h.publish_prices(PRICE, 1)
    for _ in range(5):
        h.step()
    yield h
    h.close()


def test_a_price_reaches_every_tier_from_the_head_end(tiers):
    for node in tiers.chains.values():
        for replica in node.replicas():
            assert replica.state.policy.prices(1) == PRICE
        if node.parent is not None:
            assert check_prices(node.coordinator.chain, node.parent.coordinator.chain) == 1


def test_a_new_price_follows_the_same_way(tiers):
    tiers.publish_prices((130, 70), 2)
    for _ in range(5):
        tiers.step()
    assert {n.replica.state.policy.prices(2) for n in tiers.chains.values()} == {(130, 70)}


def test_a_fake_price_injected_at_one_tier_never_commits(tiers):
    """Step 5 of Fig. 13: a price injected at the NAN only. The attacker even holds the DSO's signing key and
    controls the concentrator; the meters compare with the tier above and vote no."""
    nan = tiers.chains["nan:DC-0-0"]
    fake = tiers.dsos[nan.chain_id].policy(2, prices=(1, 500))
    honest_view = nan.coordinator.parent
    nan.coordinator.parent = None  # the compromised concentrator does not check
    nan.coordinator.submit(fake)
    result = nan.round(tiers.time + 1)
    assert result.committed is None
    assert {v.code for v in result.votes.values()} == {"bad-policy-fake-price"}
    assert nan.replica.state.policy.prices(2) == PRICE
    # an honest concentrator does not even propose it
    nan.coordinator.parent = honest_view
    assert fake.txid not in {tx.txid for tx in nan.coordinator.pending.values()}  # the members' refusal dropped it
    nan.coordinator.submit(fake)  # the attacker tries again
    assert nan.coordinator.propose(tiers.time + 2) is None
    assert nan.coordinator.rejected[fake.txid].code == "bad-policy-fake-price"
    # and the homes below never see it
    for _ in range(3):
        tiers.step()
    assert tiers.chains["han:MI-0-0-0"].replica.state.policy.prices(2) == PRICE


def test_a_price_not_signed_by_the_dso_is_refused_by_the_ledger(tiers):
    head = tiers.head  # where the DSO publishes: no tier above to compare with, the signature decides
    forged = DSO(KeyPair.from_secret("attacker"), head.chain_id, nonce=50).policy(2, prices=(1, 500))
    head.coordinator.submit(forged)
    assert head.coordinator.propose(tiers.time + 1) is None
    assert head.coordinator.rejected[forged.txid].code == "bad-policy-signature"
    nan_copy = tiers.price_copies[0][1][tiers.chains["nan:DC-0-0"].chain_id]
    head.coordinator.submit(nan_copy)  # a genuine copy replayed on another chain
    assert head.coordinator.propose(tiers.time + 2) is None
    assert head.coordinator.rejected[nan_copy.txid].code == "bad-policy-signature"


def test_nodes_discard_price_signals_that_differ_from_their_coordinators(tiers):
    han = tiers.chains["han:MI-0-0-0"]
    coordinator_view = StateView(lambda: han.parent.replica.state)
    check_price_signal(PRICE, 1, coordinator_view)
    with pytest.raises(Reject, match="bad-policy-fake-price"):
        check_price_signal((1, 500), 1, coordinator_view)  # e.g. a price message injected on the meter's network


def test_the_audit_finds_a_price_missing_above(tiers):
    tiers.publish_prices((130, 70), 3)
    tiers.step()  # the HAN has relayed nothing yet, its parent neither: compare the other way round
    head, fan = tiers.head.coordinator.chain, tiers.chains["fan:FAN-0"].coordinator.chain
    with pytest.raises(Reject, match="bad-policy-fake-price"):
        check_prices(head, fan)
