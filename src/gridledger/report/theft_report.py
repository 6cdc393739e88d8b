"""The report of ``gridledger theft evaluate``: ROC, score distributions, confusion matrices (Table 6), per attack
and per meter (Table 5).

Built from the evaluation's own objects (:class:`gridledger.analytics.theft.Detection`, the labels it was
scored against and the metrics of :func:`gridledger.analytics.theft.report`); nothing is re-scored. Positives
are tampered meter-days, as in Olivares-Rojas et al. (2023), Table 6; attacks h1–h6 are Jokar et al. (2016)'s.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import roc_curve

from gridledger.analytics.theft import Detection, TheftSettings
from gridledger.analytics.theft_attacks import inject_theft

from .html import Figure, Report, Table
from .provenance import Provenance

METRICS = (
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("auc", "AUC"),
)
LEVELS = (("without_rl", "detector"), ("with_rl", "detector + RL"))
ATTACKS = {
    1: "h1 whole day × α",
    2: "h2 zero for ≥ 4 h",
    3: "h3 each step × γ",
    4: "h4 mean × γ",
    5: "h5 flat mean",
    6: "h6 day reversed",
}
HONEST, TAMPERED = "#1f77b4", "#d62728"


def _cell(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) else "n/a"


def _summary(result: dict) -> Table:
    rows = tuple(
        (name, *(_cell(result[key][m]) for m, _ in METRICS), str(result[key]["n"])) for key, name in LEVELS
    )
    return Table(("", *(label for _, label in METRICS), "meter-days"), rows)


def _rates(confusion: list[list[int]]) -> tuple[float, float]:
    """(false-positive rate, true-positive rate) of a Table 6 confusion matrix ``[[TP, FN], [FP, TN]]``."""
    (tp, fn), (fp, tn) = confusion
    return fp / (fp + tn) if fp + tn else float("nan"), tp / (tp + fn) if tp + fn else float("nan")


def _roc(y: np.ndarray, scores: dict[str, np.ndarray], result: dict) -> Figure:
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#999"})
    )
    for (key, name), color in zip(LEVELS, ("#ff7f0e", "#2ca02c"), strict=True):
        fpr, tpr, _ = roc_curve(y, scores[key])
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=f"{name} (AUC {result[key]['auc']:.3f})",
                line={"color": color},
            )
        )
        op_fpr, op_tpr = _rates(result[key]["confusion"])
        fig.add_trace(
            go.Scatter(
                x=[op_fpr],
                y=[op_tpr],
                mode="markers",
                name=f"{name}: its decisions",
                marker={"color": color, "size": 11, "symbol": "x"},
            )
        )
    fig.update_layout(
        xaxis={"title": "false-positive rate (honest days flagged)", "range": [0, 1]},
        yaxis={"title": "true-positive rate (tampered days found)", "range": [0, 1.02]},
        height=480,
    )
    return Figure(
        "ROC curve",
        fig,
        "Every threshold on the detector's log-odds and on the meter agents' value Q(s, tampered); the "
        "crosses are the decisions actually taken (log-odds > 0; Q > 0). Up and to the left is better.",
    )


def _distributions(y: np.ndarray, probability: np.ndarray, agent: np.ndarray) -> Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("detector: theft probability", "meter agent (RL): Q(s, tampered)"),
        horizontal_spacing=0.1,
    )
    for col, values, edges, cut in ((1, probability, (0.0, 1.0), 0.5), (2, agent, (-1.0, 1.0), 0.0)):
        for label, name, color in ((0, "honest", HONEST), (1, "tampered", TAMPERED)):
            fig.add_trace(
                go.Histogram(
                    x=values[y == label],
                    name=f"{name} meter-days",
                    legendgroup=name,
                    showlegend=col == 1,
                    marker={"color": color},
                    opacity=0.6,
                    histnorm="percent",
                    xbins={"start": edges[0], "end": edges[1], "size": (edges[1] - edges[0]) / 40},
                ),
                row=1,
                col=col,
            )
        fig.add_vline(x=cut, line={"dash": "dash", "color": "#555"}, row=1, col=col)
        fig.update_xaxes(range=list(edges), row=1, col=col)
    fig.update_layout(barmode="overlay", height=420, yaxis={"title": "% of the class's meter-days"})
    return Figure(
        "Score distributions, honest vs tampered meter-days",
        fig,
        "Each class normalised to 100 %. The dashed lines are the decision thresholds; the overlap is "
        "where the mistakes are.",
    )


def _confusion(result: dict) -> Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=[name for _, name in LEVELS], horizontal_spacing=0.15)
    top = max(max(map(max, result[key]["confusion"])) for key, _ in LEVELS)
    for col, (key, _) in enumerate(LEVELS, start=1):
        z = np.asarray(result[key]["confusion"])
        share = z / np.maximum(z.sum(axis=1, keepdims=True), 1)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=["tampered", "honest"],
                y=["tampered", "honest"],
                text=[
                    [f"{v}<br>({s:.1%} of row)" for v, s in zip(r, sr, strict=True)]
                    for r, sr in zip(z, share, strict=True)
                ],
                texttemplate="%{text}",
                colorscale="Blues",
                zmin=0,
                zmax=top,
                showscale=False,
                hovertemplate="observed %{y}, predicted %{x}: %{z} meter-days<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title="prediction", side="bottom", row=1, col=col)
        fig.update_yaxes(title="observation", autorange="reversed", row=1, col=col)
    fig.update_layout(height=380)
    return Figure(
        "Confusion matrix (Table 6 form), without and with RL",
        fig,
        "Rows are the observation, columns the prediction; positives are tampered meter-days. "
        "Top left: thefts found (TP); top right: thefts missed (FN); bottom left: false alarms (FP).",
    )


def _per_attack(kinds: np.ndarray, decisions: dict[str, np.ndarray]) -> Figure:
    present = [k for k in (*ATTACKS, 0) if (kinds == k).any()]
    names = [ATTACKS.get(k, "honest (false alarms)") for k in present]
    fig = go.Figure()
    for (key, name), color in zip(LEVELS, ("#ff7f0e", "#2ca02c"), strict=True):
        flagged = [float(np.mean(decisions[key][kinds == k] == 1)) for k in present]
        counts = [int((kinds == k).sum()) for k in present]
        fig.add_trace(
            go.Bar(
                x=names,
                y=flagged,
                name=name,
                marker={"color": color},
                customdata=counts,
                hovertemplate="%{x}: %{y:.1%} of %{customdata} meter-days flagged<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group", height=420, yaxis={"title": "share flagged", "range": [0, 1], "tickformat": ".0%"}
    )
    return Figure(
        "Detection rate per attack (Jokar h1–h6)",
        fig,
        "Share of the meter-days of each synthetic attack that were flagged; the last group is the share of "
        "honest meter-days flagged (false alarms, lower is better).",
    )


def _per_meter(per_meter: dict[str, dict]) -> Figure:
    columns = (
        ("meter", None),
        ("meter-days", "days"),
        ("tampered", "tampered"),
        ("flagged", "flagged"),
        ("false alarms", "false_alarms"),
        ("missed", "missed"),
        ("accuracy", "without_rl"),
        ("accuracy + RL", "with_rl"),
    )
    rows = list(per_meter.items())
    cells = [
        [m for m, _ in rows] if key is None
        else [f"{r[key]:.4f}" if key.endswith("_rl") else str(r[key]) for _, r in rows]
        for _, key in columns
    ]
    fig = go.Figure(
        go.Table(
            header={"values": [name for name, _ in columns], "align": ["left", *["right"] * (len(columns) - 1)]},
            cells={"values": cells, "align": ["left", *["right"] * (len(columns) - 1)]},
        )
    )
    fig.update_layout(height=min(900, 120 + 28 * len(rows)))
    return Figure(
        "Per meter (Table 5 form)",
        fig,
        "Each evaluated meter's labelled meter-days, how many were tampered, how many the meter's agent flagged, "
        "its false alarms and missed thefts (with RL), and its accuracy without and with RL. Scroll for more.",
    )


def theft_report(
    detection: Detection,
    labels: np.ndarray,
    result: dict,
    provenance: Provenance,
    attack_kinds: np.ndarray | None = None,
    notes: tuple[str, ...] = (),
) -> Report:
    """The evaluation report.

    Parameters
    ----------
    detection : what :func:`~gridledger.analytics.theft.detect` returned for the evaluated meter-days.
    labels : ``(n_meters, n_days)`` 1 tampered, 0 honest, -1 unlabelled (the same labels the metrics used).
    result : :func:`~gridledger.analytics.theft.report` of ``detection`` and ``labels``.
    provenance : the footer.
    attack_kinds : ``(n_meters, n_days)`` 0 honest or k for attack h*k*, when the attacks were injected.
    notes : lines under the title (data set, scope).
    """
    ok = (labels >= 0) & np.isfinite(detection.logits)
    y = labels[ok]
    scores = {"without_rl": detection.logits[ok], "with_rl": detection.agent_scores[ok]}
    figures = []
    extra = []
    if 0 < y.sum() < y.size:
        figures.append(_roc(y, scores, result))
    else:
        extra.append("Only one class among the labelled meter-days: no ROC curve.")
    figures.append(_distributions(y, detection.probability[ok], scores["with_rl"]))
    figures.append(_confusion(result))
    figures.append(_per_meter(result["per_meter"]))
    if attack_kinds is not None:
        decisions = {"without_rl": detection.detector_decisions[ok], "with_rl": detection.agent_decisions[ok]}
        figures.append(_per_attack(attack_kinds[ok], decisions))
    else:
        extra.append(
            "Labels came from the file, which does not say which attack a day suffered: no per-attack rates."
        )
    return Report(
        "Energy-theft detection: evaluation",
        _summary(result),
        tuple(figures),
        provenance,
        (*notes, *extra),
    )


def injected_attacks(
    consumption: np.ndarray, settings: TheftSettings, seed: int, reported: np.ndarray, labels: np.ndarray
) -> np.ndarray | None:
    """Which attack each meter-day of an injected scenario got (0 honest, k for h*k*), or None if unknown.

    :func:`~gridledger.analytics.theft.labelled_scenario` keeps only the labels; the draw is repeated here
    with the same seed and accepted only if it reproduces the evaluated days and labels exactly.
    """
    tampered, kind = inject_theft(
        consumption, settings.theft_rate, np.random.default_rng(seed), settings.attacks
    )
    known = labels >= 0
    if np.array_equal(tampered, reported, equal_nan=True) and np.array_equal(
        (kind > 0)[known], labels[known] == 1
    ):
        return kind
    return None
