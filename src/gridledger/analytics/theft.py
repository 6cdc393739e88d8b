"""Energy-theft detection at the data concentrator, with and without the meters' reinforcement learning.

The detector is trained on honest profiles with synthetic theft injected by the attack models of Jokar et al.
(2016) (:mod:`.attacks`), on the per meter-day features of :mod:`.features`, with scikit-learn's
histogram gradient boosting. At run time each meter's lower-level agent (:mod:`.rl`) turns the detector's
log-odds into its own decision and, when labelled feedback arrives, learns from the ±1 rewards — the paper's
"with RL" figures (Olivares-Rojas et al. 2023, §4.2: 88.16 % → 90.61 %).

Everything here is I/O-free; :mod:`gridledger.cli.analytics` reads files and stores models.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from .data import DayCube, describe_step
from .features import THEFT_FEATURES, day_features, theft_features
from .metrics import Interval, classification_report, mean_interval
from .rl import ConcentratorAgent, detector_prior, learn_prior, run_online
from .theft_attacks import ATTACKS, inject_theft
from .trees import BoostedTrees, ModelFormatError

FORMAT = "gridledger-theft-model"
FORMAT_VERSION = 2
Progress = Callable[[str], None]
MIN_EVALUATION_DAYS = 500
"""Fewest labelled meter-days for metrics worth comparing: below it the 95 % interval of an accuracy of 0.95
is wider than ±2 points (``1.96 * sqrt(0.95 * 0.05 / n)``); :func:`report` warns."""


class SmallSampleWarning(UserWarning):
    """Metrics computed on fewer than :data:`MIN_EVALUATION_DAYS` labelled meter-days."""


@dataclass(frozen=True)
class TheftSettings:
    """How a detector is trained.

    Parameters
    ----------
    theft_rate : share of honest meter-days that get a synthetic attack in the first training draw.
    draws : independent attack draws over the training data (more draws, more varied examples).
    low_rate : the last draw's share; the draws' shares are spaced evenly from ``theft_rate`` down to it (the
        features compare a day with the meter's other days, and those look different when 50 % or 10 % of them
        are tampered: a detector trained at one share only false-alarms at the other).
    balanced : weigh the tampered and honest training days to equal total weight, so that log-odds 0 means even
        odds whatever the draws' shares.
    folds : meter-wise folds for the out-of-fold log-odds the agents are trained on.
    attacks : attack models to inject (names from :data:`.attacks.ATTACKS`).
    inject_labelled : also tamper days the input labels honest (0); by default only unlabelled days are.
    max_iter, learning_rate, max_leaf_nodes : gradient-boosting settings.
    seed : seeds every random draw and the booster.
    """

    theft_rate: float = 0.5
    draws: int = 5
    low_rate: float = 0.1
    balanced: bool = True
    folds: int = 3
    attacks: tuple[str, ...] = tuple(ATTACKS)
    inject_labelled: bool = False
    max_iter: int = 300
    learning_rate: float = 0.08
    max_leaf_nodes: int = 31
    seed: int = 0

    def draw_rates(self, draws: int) -> np.ndarray:
        """The theft share of each of ``draws`` training draws."""
        return np.linspace(self.theft_rate, min(self.low_rate, self.theft_rate), draws)

    def weights(self, y: np.ndarray) -> np.ndarray | None:
        """Sample weights for training labels ``y`` (None: unweighted)."""
        if not self.balanced or len(np.unique(y)) < 2:
            return None
        share = float(np.mean(y))
        return np.where(y == 1, 0.5 / share, 0.5 / (1.0 - share))

    def fit(self, X: np.ndarray, y: np.ndarray) -> HistGradientBoostingClassifier:
        """The booster fitted on ``(X, y)`` with :meth:`weights`."""
        return self.booster().fit(X, y, sample_weight=self.weights(y))

    def booster(self) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=self.seed,
        )


@dataclass(frozen=True)
class TheftModel:
    """A trained detector plus the concentrator's prior for the meters' agents.

    Attributes
    ----------
    trees : the boosted-tree classifier over ``features``.
    step_s : resolution (s) of the data it was trained on; data must come at this resolution (or finer).
    agent_prior : the upper-level agent's parameters learned on the training meters.
    info : training settings and sizes, for people.
    features : the columns of :func:`.features.day_features` the trees read, in order (a model keeps the list
        it was trained with, so a model of an earlier version with fewer features still loads).
    """

    trees: BoostedTrees
    step_s: int
    agent_prior: np.ndarray
    info: dict = field(default_factory=dict)
    features: tuple[str, ...] = THEFT_FEATURES

    def logits(self, days: np.ndarray, export: np.ndarray | None = None) -> np.ndarray:
        """Detector log-odds ``(n_meters, n_days)`` for a cube of reported energy (NaN where no day); ``export``,
        the meters' export register of the same shape if known (its slots are left out of a day's base load)."""
        feats = theft_features(days, self.features, export)
        out = np.full(feats.shape[:2], np.nan)
        ok = np.isfinite(days).all(axis=-1)
        if ok.any():
            out[ok] = self.trees.decision_function(feats[ok])
        return out

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "step_s": self.step_s,
            "features": list(self.features),
            "agent_prior": self.agent_prior.tolist(),
            "info": self.info,
            "trees": self.trees.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TheftModel:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFormatError(f"not a {FORMAT} file")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(f"unsupported {FORMAT} version {data.get('format_version')!r}")
        try:
            model = cls(
                BoostedTrees.from_dict(data["trees"]),
                int(data["step_s"]),
                np.asarray(data["agent_prior"], dtype=float),
                dict(data.get("info", {})),
                tuple(data["features"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFormatError):
                raise
            raise ModelFormatError(f"malformed {FORMAT} file: {exc!r}") from exc
        if model.trees.n_features != len(model.features):
            raise ModelFormatError(
                f"the model's feature list does not match its trees ({len(model.features)} names, "
                f"{model.trees.n_features} features)"
            )
        unknown = sorted(set(model.features) - set(day_features(np.ones((1, 1, 1)))))
        if unknown:
            raise ModelFormatError(f"the model uses features unknown to this version of gridledger: {unknown}")
        if model.agent_prior.shape != detector_prior().shape or not np.isfinite(model.agent_prior).all():
            raise ModelFormatError("malformed agent prior")
        return model

    def conform(self, cube: DayCube) -> DayCube:
        """Bring a cube to the model's resolution (summing finer data), or explain why that is impossible."""
        if cube.step_s == self.step_s:
            return cube
        if self.step_s % cube.step_s:
            raise ModelFormatError(
                f"the model was trained on {describe_step(self.step_s)} data; this data is "
                f"{describe_step(cube.step_s)} and cannot be aggregated to it"
            )
        return cube.coarsen(self.step_s)


def attack_scenario(
    cube: DayCube, settings: TheftSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Reported energy and labels: the input's labels as given, unlabelled days tampered at ``theft_rate``.

    Days labelled 0 are honest and stay so unless ``settings.inject_labelled``; days labelled 1 are kept as
    real thefts. Returns ``(reported, labels)``, labels -1 where a day is incomplete.
    """
    x = cube.values["consumption_wh"]
    open_ = cube.labels < 0 if not settings.inject_labelled else cube.labels != 1
    tampered, kind = inject_theft(np.where(open_[..., None], x, np.nan), settings.theft_rate, rng, settings.attacks)
    reported = np.where(open_[..., None], tampered, x)
    labels = np.where(open_, kind > 0, cube.labels == 1).astype(np.int8)
    labels[~np.isfinite(reported).all(axis=-1)] = -1
    return reported, labels


def train(
    cubes: DayCube | Sequence[DayCube], settings: TheftSettings = TheftSettings(), progress: Progress | None = None
) -> TheftModel:
    """Train the detector and the agents' prior on one or more neighbourhoods' (mostly honest) consumption.

    Each cube is one neighbourhood (its meters are each other's neighbours in the features); all must have
    the same resolution. Labelled days keep their labels (1: real theft, 0: honest); unlabelled days are
    taken as honest and a share of them is tampered in each of ``draws`` draws, the shares spaced from
    ``theft_rate`` down to ``low_rate`` (one draw at ``theft_rate`` when every day is labelled); with
    ``balanced`` the two classes weigh the same. The agents' prior is learned by running the meters' agents over
    the training meters with out-of-fold detector log-odds (meter-wise folds), so the agents see log-odds as
    unreliable as they will be on new meters, pooled over every draw (:func:`.rl.learn_prior`). The boosting
    runs single-threaded, so a seed gives the same model anywhere.
    """
    cubes = [cubes] if isinstance(cubes, DayCube) else list(cubes)
    if len({c.step_s for c in cubes}) != 1:
        raise ValueError("every training neighbourhood must have the same resolution (coarsen them first)")
    with threadpool_limits(limits=1, user_api="openmp"):
        return _train(cubes, settings, progress or (lambda _msg: None))


def _train(cubes: list[DayCube], settings: TheftSettings, say: Progress) -> TheftModel:
    n_m = sum(len(c.meters) for c in cubes)
    if n_m < 2:
        raise ValueError("theft training needs at least 2 meters (a neighbourhood)")
    rng = np.random.default_rng(settings.seed)
    draws = settings.draws if any((c.labels < 0).any() or settings.inject_labelled for c in cubes) else 1
    # one scenario per (draw, neighbourhood); meters numbered across neighbourhoods for the folds
    scenarios, first_meter = [], np.cumsum([0] + [len(c.meters) for c in cubes])
    for rate in settings.draw_rates(draws):
        drawn = replace(settings, theft_rate=float(rate))
        for c, first in zip(cubes, first_meter, strict=False):
            scenarios.append((c, first, *attack_scenario(c, drawn, rng)))
    # The import register alone, even where the export register is known: PV homes' sunny zeros in the base teach
    # the detector that a base of zero is no theft by itself (trained with their export slots left out of the base,
    # it took RAMP homes' zero base for h2 and ramp left out fell from 0.954 to 0.930 at 50 % theft).
    feats = [theft_features(reported) for _, _, reported, _ in scenarios]
    rows = [
        (f[y >= 0], y[y >= 0], first + np.nonzero(y >= 0)[0])
        for f, (_, first, _, y) in zip(feats, scenarios, strict=True)
    ]
    X = np.concatenate([r[0] for r in rows])
    y = np.concatenate([r[1] for r in rows])
    meter_of = np.concatenate([r[2] for r in rows])
    if len(np.unique(y)) < 2:
        raise ValueError("training data has a single class; raise theft_rate or add days")

    folds = min(settings.folds, n_m)
    fold_of_meter = rng.permutation(n_m) % folds
    oof = [np.full(y_.shape, np.nan) for *_, y_ in scenarios]
    for k in range(folds):
        say(f"out-of-fold detector {k + 1}/{folds}")
        held = fold_of_meter[meter_of] == k
        if len(np.unique(y[~held])) < 2:
            continue
        booster = settings.fit(X[~held], y[~held])
        for f, (c, first, _, y_s), out in zip(feats, scenarios, oof, strict=True):
            mask = (y_s >= 0) & (fold_of_meter[first : first + len(c.meters), None] == k)
            if mask.any():
                out[mask] = booster.decision_function(f[mask])

    say("agents' prior")
    prior = learn_prior(
        (c.meters, reported, logits, labels) for (c, _, reported, labels), logits in zip(scenarios, oof, strict=True)
    )

    say("final detector")
    trees = BoostedTrees.from_sklearn(settings.fit(X, y))
    info = {
        "theft_rate": settings.theft_rate,
        "draw_rates": [round(float(r), 4) for r in settings.draw_rates(draws)],
        "balanced": settings.balanced,
        "draws": draws,
        "attacks": list(settings.attacks),
        "inject_labelled": settings.inject_labelled,
        "seed": settings.seed,
        "neighbourhoods": len(cubes),
        "meters": n_m,
        "days": sum(len(c.days) for c in cubes),
        "examples": int(y.size),
        "positives": int(y.sum()),
    }
    return TheftModel(trees, cubes[0].step_s, prior, info)


@dataclass(frozen=True)
class Detection:
    """Per meter-day results ``(n_meters, n_days)``; NaN / -1 where there was no complete day."""

    meters: list[str]
    logits: np.ndarray
    detector_decisions: np.ndarray
    agent_scores: np.ndarray
    agent_decisions: np.ndarray
    adjustments: int

    @property
    def probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits))


def detect(
    model: TheftModel,
    meters: list[str],
    reported: np.ndarray,
    labels: np.ndarray | None = None,
    export: np.ndarray | None = None,
) -> Detection:
    """Score reported days; with ``labels`` the meters' agents also learn from them as feedback, day by day.

    Every decision is made before its own label is revealed (prequential), so with labels the agents'
    decisions are still an honest out-of-sample measurement. ``export`` is the meters' export register (Wh, the
    shape of ``reported``) where known: net-metered PV homes read zero import whenever the sun covers their load,
    and those slots are not their base load.
    """
    logits = model.logits(reported, export)
    decisions = np.where(np.isfinite(logits), (logits > 0).astype(np.int8), -1).astype(np.int8)
    online = run_online(ConcentratorAgent(prior=model.agent_prior.copy()), meters, reported, logits, labels)
    return Detection(meters, logits, decisions, online.scores, online.decisions, online.adjustments)


def report(detection: Detection, labels: np.ndarray) -> dict:
    """Metrics of the detector alone and with the agents over labelled meter-days, and per-meter results (the
    paper's Table 5): labelled days, tampered days, days flagged, false alarms and missed thefts (with RL), and
    the accuracy without and with RL.

    Below :data:`MIN_EVALUATION_DAYS` labelled meter-days it warns (:class:`SmallSampleWarning`) and says so
    in ``"warning"`` (None otherwise).
    """
    ok = (labels >= 0) & np.isfinite(detection.logits)
    if not ok.any():
        raise ValueError("no labelled complete meter-days to evaluate")
    y = labels[ok]
    warning = None
    if y.size < MIN_EVALUATION_DAYS:
        p = 0.95
        warning = (
            f"only {y.size} labelled meter-days ({int(y.sum())} tampered), fewer than {MIN_EVALUATION_DAYS}: "
            f"an accuracy of {p:.2f} is uncertain by ±{1.96 * np.sqrt(p * (1 - p) / y.size):.1%} (95 %)"
        )
        warnings.warn(warning, SmallSampleWarning, stacklevel=2)
    without = classification_report(y, detection.logits[ok], detection.detector_decisions[ok])
    with_rl = classification_report(y, detection.agent_scores[ok], detection.agent_decisions[ok])
    per_meter = {}
    for i, meter in enumerate(detection.meters):
        row = ok[i]
        if row.any():
            truth, flags = labels[i, row], detection.agent_decisions[i, row]
            per_meter[meter] = {
                "days": int(row.sum()),
                "tampered": int(truth.sum()),
                "flagged": int(flags.sum()),
                "false_alarms": int(((flags == 1) & (truth == 0)).sum()),
                "missed": int(((flags == 0) & (truth == 1)).sum()),
                "without_rl": float(np.mean(detection.detector_decisions[i, row] == truth)),
                "with_rl": float(np.mean(flags == truth)),
            }
    return {
        "without_rl": without,
        "with_rl": with_rl,
        "adjustments": detection.adjustments,
        "per_meter": per_meter,
        "warning": warning,
    }


def labelled_scenario(
    cube: DayCube, settings: TheftSettings, seed: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The reported days and labels to evaluate on: the cube's own labels if it has any, else injected theft.

    Returns ``(reported, labels, injected)``.
    """
    if (cube.labels >= 0).any():
        return cube.values["consumption_wh"], cube.labels, False
    reported, labels = attack_scenario(cube, settings, np.random.default_rng(seed))
    return reported, labels, True


def split_meters(n_meters: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded meter-wise split: (train positions, test positions), both non-empty."""
    if n_meters < 3:
        raise ValueError(f"a meter-wise split needs at least 3 meters, got {n_meters}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n_meters)
    n_test = min(n_meters - 2, max(1, round(test_fraction * n_meters)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def holdout_evaluation(
    cube: DayCube,
    settings: TheftSettings = TheftSettings(),
    test_fraction: float = 0.3,
    progress: Progress | None = None,
) -> dict:
    """Train on a meter-wise split of ``cube`` and report on the held-out meters only."""
    train_idx, test_idx = split_meters(len(cube.meters), test_fraction, settings.seed)
    model = train(cube.select(train_idx), settings, progress)
    test = cube.select(test_idx)
    reported, labels, injected = labelled_scenario(test, settings, settings.seed + 1)
    if progress:
        progress("held-out meters")
    result = report(detect(model, test.meters, reported, labels, test.values.get("production_wh")), labels)
    result.update(injected=injected, train_meters=len(train_idx), test_meters=test.meters)
    return result


def rl_gain(
    cube: DayCube,
    settings: TheftSettings = TheftSettings(),
    rates: tuple[float, ...] = (0.5, 0.1),
    seeds: Sequence[int] = tuple(range(10)),
    folds: int = 5,
    progress: Progress | None = None,
) -> dict[float, Interval]:
    """What the meters' agents add to the detector: accuracy points (with RL − without), mean over seeds and its
    95 % confidence interval, at each theft share in ``rates``.

    Each seed is one independent repetition: a meter-wise ``folds``-fold cross-validation (every meter held out
    once) with that seed's folds, training attacks and booster, and that seed's attacks on the held-out
    meter-days at each share; the agents learn prequentially from the labels. Gains are pooled over the folds of
    a seed, so the interval is over whole repetitions.
    """
    say = progress or (lambda _msg: None)
    gains: dict[float, list[float]] = {rate: [] for rate in rates}
    for seed in seeds:
        fold_of = np.random.default_rng(seed).permutation(len(cube.meters)) % folds
        pooled = {rate: ([], [], []) for rate in rates}
        for k in range(folds):
            say(f"seed {seed}: fold {k + 1}/{folds}")
            seeded = replace(settings, seed=seed)
            model = train(cube.select(np.flatnonzero(fold_of != k)), seeded)
            test = cube.select(np.flatnonzero(fold_of == k))
            for j, rate in enumerate(rates):
                draw = TheftSettings(theft_rate=rate, attacks=settings.attacks, inject_labelled=True)
                rng = np.random.default_rng([seed, k, j])
                reported, labels = attack_scenario(test, draw, rng)
                found = detect(model, test.meters, reported, labels)
                ok = labels >= 0
                for acc, part in zip(pooled[rate], (labels, found.detector_decisions, found.agent_decisions),
                                     strict=True):
                    acc.append(part[ok])
        for rate, (y, det, rl) in pooled.items():
            y, det, rl = (np.concatenate(a) for a in (y, det, rl))
            gains[rate].append(100 * (float(np.mean(rl == y)) - float(np.mean(det == y))))
    return {rate: mean_interval(v) for rate, v in gains.items()}
