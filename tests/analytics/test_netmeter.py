"""Net-metered homes for the theft detector: PV and batteries behind the meter, and an honest run's readings."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.analytics.augment import VARIATIONS, Variation, training_neighbourhoods, varied
from gridledger.analytics.netmeter import NetMetering, net_metered
from gridledger.analytics.theft import TheftSettings, train


@pytest.fixture(scope="module")
def homes(cube):
    """The fixture's homes without PV of their own: consumption only."""
    own = np.flatnonzero(np.nansum(cube.values["production_wh"], axis=(1, 2)) == 0)
    return cube.select(own[:6])


def metered(homes, battery_share):
    return net_metered(homes, np.random.default_rng(4), NetMetering(pv_share=1.0, battery_share=battery_share))


def test_pv_turns_midday_consumption_into_export_and_leaves_homes_without_pv_alone(homes):
    out, kind = net_metered(homes, np.random.default_rng(1), NetMetering(pv_share=0.5, battery_share=0.0))
    load = homes.values["consumption_wh"]
    imp, exp = out.values["consumption_wh"], out.values["production_wh"]
    assert set(kind) <= {0, 1} and 0 < (kind == 1).sum() < len(kind)
    np.testing.assert_array_equal(imp[kind == 0], load[kind == 0])
    assert (exp[kind == 0] == 0).all()
    pv = kind == 1
    assert (imp[pv] <= load[pv] + 1e-9).all() and (imp >= 0).all() and (exp >= 0).all()
    night = slice(0, 4 * 4)  # 00:00-04:00 at 15 minutes
    assert (exp[pv][..., night] == 0).all() and exp[pv].sum() > 0
    np.testing.assert_allclose(imp[pv][..., night], load[pv][..., night])
    # import and export are never both non-zero in one slot without a battery
    assert not ((imp[pv] > 0) & (exp[pv] > 0)).any()


def test_a_battery_stores_the_surplus_and_serves_the_evening(homes):
    pv_only, kind1 = metered(homes, 0.0)
    stored, kind2 = metered(homes, 1.0)
    assert (kind1 == 1).all() and (kind2 == 2).all()
    for name in ("consumption_wh", "production_wh"):
        assert stored.values[name].sum() < 0.8 * pv_only.values[name].sum()
    evening = slice(19 * 4, 23 * 4)
    assert stored.values["consumption_wh"][..., evening].sum() < pv_only.values["consumption_wh"][..., evening].sum()


def test_training_draws_span_the_theft_shares_with_balanced_classes(cube):
    settings = TheftSettings(max_iter=20, draws=3, folds=2)
    assert settings.draw_rates(3).tolist() == pytest.approx([0.5, 0.3, 0.1])
    model = train(cube, settings)
    share = model.info["positives"] / model.info["examples"]
    assert 0.25 < share < 0.35  # 0.5 in every draw would give ~0.5
    y = np.array([1, 0, 0, 0])
    w = settings.weights(y)
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum())
    assert TheftSettings(balanced=False).weights(y) is None


def test_the_varied_copy_moves_days_and_slots_but_keeps_the_energy(homes):
    x = homes.values["consumption_wh"]
    v = varied(homes, np.random.default_rng(2), Variation(day_sd=0.35, slot_sd=0.6)).values["consumption_wh"]
    assert v.shape == x.shape and (v >= 0).all()
    assert abs(v.sum() / x.sum() - 1) < 0.1
    day_cv = lambda a: np.mean(a.sum(axis=2).std(axis=1) / a.sum(axis=2).mean(axis=1))  # noqa: E731
    assert day_cv(v) > day_cv(x) + 0.05
    steady = varied(homes, np.random.default_rng(2), Variation(0.0, 0.0))
    np.testing.assert_array_equal(steady.values["consumption_wh"], x)


def test_training_neighbourhoods_are_the_source_and_its_copies(homes):
    cubes, card = training_neighbourhoods(homes, np.random.default_rng(0))
    assert len(cubes) == 2 + len(VARIATIONS) and cubes[0] is homes
    assert cubes[1].values["production_wh"].sum() > 0 and set(card) == {"net_metered_copy", "varied_copies"}
    assert len(card["varied_copies"]) == len(VARIATIONS)
    alone, card = training_neighbourhoods(homes, np.random.default_rng(0), None, ())
    assert alone == [homes] and card == {}
