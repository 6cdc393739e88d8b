"""Does the theft detector hold up on households it has never seen? Leave-one-source-out evaluation.

Every source of household load (:mod:`.sources`) is one neighbourhood of homes from an independent model. The
detector (:mod:`.theft`, with the meters' agents of :mod:`.rl`) and a plain baseline are trained on all
sources but one (each as it is, net-metered and varied: :func:`.augment.training_neighbourhoods`) and tested on
the left-out one as it is, with attacks h1–h6 injected into a given share of its meter-days. The baseline is
scikit-learn's gradient boosting with its default settings on twelve simple day features
(:data:`BASELINE_FEATURES`), trained and tested on exactly the same days and labels; a detector that does not
beat it has not earned its complexity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from .augment import VARIATIONS, Variation, training_neighbourhoods
from .data import DayCube
from .features import day_features
from .metrics import classification_report
from .netmeter import NetMetering
from .theft import TheftSettings, attack_scenario, detect, train

BASELINE_FEATURES = (
    "log_energy_ratio",
    "log_energy_ratio_q90",
    "nb_energy_ratio",
    "cv",
    "peak",
    "trough",
    "zero_share",
    "acf1",
    "roughness",
    "shape_corr",
    "shape_l1",
    "energy_z",
)
"""The baseline's day features: energy against the meter's typical and high days and against the neighbours,
the day's variation, peak, trough, zero share, autocorrelation and roughness, and its shape against the meter's
typical day (definitions in :mod:`.features`)."""
RATES = (0.5, 0.1)


def baseline_features(days: np.ndarray) -> np.ndarray:
    """The :data:`BASELINE_FEATURES` columns ``(n_meters, n_days, 12)`` of a cube ``(n_meters, n_days, slots)``."""
    table = day_features(days)
    return np.stack([table[name] for name in BASELINE_FEATURES], axis=-1)


@dataclass(frozen=True)
class Baseline:
    """Gradient boosting with scikit-learn's defaults on :func:`baseline_features`."""

    booster: HistGradientBoostingClassifier

    @classmethod
    def fit(cls, scenarios: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> Baseline:
        """Fit on ``(reported, labels)`` pairs, one per neighbourhood (labels -1 are left out)."""
        X, y = [], []
        for reported, labels in scenarios:
            ok = labels >= 0
            X.append(baseline_features(reported)[ok])
            y.append(labels[ok])
        with threadpool_limits(limits=1, user_api="openmp"):
            booster = HistGradientBoostingClassifier(random_state=seed).fit(np.concatenate(X), np.concatenate(y))
        return cls(booster)

    def scores(self, reported: np.ndarray) -> np.ndarray:
        """Log-odds ``(n_meters, n_days)``, NaN where a day is incomplete."""
        feats = baseline_features(reported)
        out = np.full(feats.shape[:2], np.nan)
        ok = np.isfinite(reported).all(axis=-1)
        if ok.any():
            with threadpool_limits(limits=1, user_api="openmp"):
                out[ok] = self.booster.decision_function(feats[ok])
        return out


def false_alarm_rate(report: dict) -> float:
    """Share of honest meter-days flagged as tampered, from a :func:`.metrics.classification_report`."""
    (_, _), (fp, tn) = report["confusion"]
    return fp / (fp + tn) if fp + tn else float("nan")


def _scored(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray) -> dict:
    ok = (labels >= 0) & np.isfinite(scores)
    result = classification_report(labels[ok], scores[ok], decisions[ok])
    result["false_alarm_rate"] = false_alarm_rate(result)
    return result


def evaluate_left_out(
    train_cubes: list[DayCube],
    test: DayCube,
    settings: TheftSettings = TheftSettings(),
    rates: tuple[float, ...] = RATES,
    seed: int = 0,
) -> dict:
    """Train the detector and the baseline on ``train_cubes``; test both on ``test`` at each theft share.

    The baseline is trained on the same attack draws as the detector (``settings``). Test attacks are drawn
    with ``seed``. Returns ``{rate: {"detector", "detector_rl", "baseline": classification report with
    false_alarm_rate, "days": labelled meter-days}}``; with-RL figures are prequential (labels as feedback
    after each decision).
    """
    model = train(train_cubes, settings)
    rng = np.random.default_rng(settings.seed)
    draws = model.info["draws"]
    drawn = [replace(settings, theft_rate=float(r)) for r in settings.draw_rates(draws)]
    base = Baseline.fit([attack_scenario(c, d, rng) for d in drawn for c in train_cubes], seed)
    out = {}
    for k, rate in enumerate(rates):
        draw = TheftSettings(theft_rate=rate, attacks=settings.attacks)
        reported, labels = attack_scenario(test, draw, np.random.default_rng(seed + k))
        found = detect(model, test.meters, reported, labels)
        b = base.scores(reported)
        out[rate] = {
            "detector": _scored(labels, found.logits, found.detector_decisions),
            "detector_rl": _scored(labels, found.agent_scores, found.agent_decisions),
            "baseline": _scored(labels, b, np.where(np.isfinite(b), b > 0, -1).astype(np.int8)),
            "days": int((labels >= 0).sum()),
        }
    return out


def leave_one_source_out(
    cubes: Mapping[str, DayCube],
    settings: TheftSettings = TheftSettings(),
    rates: tuple[float, ...] = RATES,
    seed: int = 0,
    net_metering: NetMetering | None = NetMetering(),
    variations: tuple[Variation, ...] = VARIATIONS,
) -> dict[str, dict]:
    """:func:`evaluate_left_out` with each source left out in turn: ``{source: {rate: ...}}``.

    Every training source enters as the shipped model's do (:func:`.augment.training_neighbourhoods`, seeded per
    source): as it is, net-metered (``net_metering``) and varied (``variations``); the left-out source is tested as
    it is. All cubes must have the same resolution (coarsen them first).
    """
    if len(cubes) < 2:
        raise ValueError("leave-one-source-out needs at least 2 sources")
    training = {
        name: training_neighbourhoods(c, np.random.default_rng([seed, k]), net_metering, variations)[0]
        for k, (name, c) in enumerate(cubes.items())
    }
    return {
        name: evaluate_left_out(
            [x for other in cubes if other != name for x in training[other]], cube, settings, rates, seed
        )
        for name, cube in cubes.items()
    }
