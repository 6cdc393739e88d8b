"""Error and classification metrics, with the conventions used throughout the analytics.

Forecast errors ignore points where the observation or the forecast is NaN. NRMSE is the RMSE divided by the
mean observation (CV(RMSE)); MAPE (in %) skips observations below 1 % of the mean observation, because it
explodes near zero load and at night for PV — so it is always reported beside MAE and NRMSE, never alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t
from sklearn.metrics import confusion_matrix, roc_auc_score

MAPE_FLOOR = 0.01


def forecast_errors(observed: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """MAE (observation units), NRMSE (fraction of the mean observation) and MAPE (%) over common points."""
    y = np.asarray(observed, dtype=float).ravel()
    f = np.asarray(forecast, dtype=float).ravel()
    ok = np.isfinite(y) & np.isfinite(f)
    y, f = y[ok], f[ok]
    if y.size == 0:
        return {"mae": float("nan"), "nrmse": float("nan"), "mape": float("nan"), "n": 0}
    err = f - y
    mean = float(np.mean(np.abs(y)))
    rmse = float(np.sqrt(np.mean(err**2)))
    big = np.abs(y) >= MAPE_FLOOR * mean
    return {
        "mae": float(np.mean(np.abs(err))),
        "nrmse": rmse / mean if mean > 0 else float("nan"),
        "mape": float(100 * np.mean(np.abs(err[big]) / np.abs(y[big])))
        if mean > 0 and big.any()
        else float("nan"),
        "n": int(y.size),
    }


def classification_report(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC and the confusion matrix in the paper's Table 6 form.

    ``confusion`` is ``[[TP, FN], [FP, TN]]``: rows are the observation (positive = tampered, negative =
    honest), columns the prediction, as in Olivares-Rojas et al. (2023), Table 6.
    """
    y = np.asarray(labels, dtype=int).ravel()
    d = np.asarray(decisions, dtype=int).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, d, labels=[0, 1]).ravel())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "n": int(y.size),
        "accuracy": (tp + tn) / y.size if y.size else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "auc": float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else float("nan"),
        "confusion": [[tp, fn], [fp, tn]],
    }


@dataclass(frozen=True)
class Interval:
    """A mean over repeated runs with its two-sided confidence interval (Student's t over the runs)."""

    mean: float
    low: float
    high: float
    values: tuple[float, ...]
    confidence: float = 0.95

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.mean:+.2f} ({pct} % CI {self.low:+.2f} .. {self.high:+.2f}, {len(self.values)} runs)"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "runs": list(self.values),
                "confidence": self.confidence}


def mean_interval(values: list[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean of at least 2 independent runs and its t confidence interval ``mean ± t · s / sqrt(n)``."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 runs, got {v.size}")
    half = float(student_t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    mean = float(v.mean())
    return Interval(mean, mean - half, mean + half, tuple(float(x) for x in v), confidence)
