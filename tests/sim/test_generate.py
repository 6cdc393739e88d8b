"""Generated communities are valid community files with feeders the private market can run on."""

from __future__ import annotations

import pytest

from gridledger.profiles.community import parse_community
from gridledger.sim.generate import community_data


@pytest.mark.parametrize(("homes", "per_feeder", "feeders"), [(3, 50, 1), (20, 10, 2), (101, 50, 2), (149, 50, 2)])
def test_every_home_is_on_a_feeder_of_at_least_three(homes, per_feeder, feeders):
    c = parse_community(community_data(homes, 2, seed=3, homes_per_feeder=per_feeder))
    assert len(c.homes) == homes and c.days == 2 and len(c.feeders) == feeders
    sizes = [len(c.homes_on(f.id)) for f in c.feeders]
    assert sum(sizes) == homes and min(sizes) >= 3
    assert all(f.internal_capacity_w == 4000 * n for f, n in zip(c.feeders, sizes, strict=True))
    assert any(h.pv_kw > 0 for h in c.homes) or homes < 5


def test_the_same_seed_gives_the_same_community():
    assert community_data(30, 1, seed=7) == community_data(30, 1, seed=7)
    assert community_data(30, 1, seed=7) != community_data(30, 1, seed=8)
