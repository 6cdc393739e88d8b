"""Gradient-boosted trees stored as plain JSON: no pickle, no code execution on load.

A fitted :class:`sklearn.ensemble.HistGradientBoostingClassifier` is exported to its trees (each node's split
feature, threshold, missing-value direction, children and leaf value) and its baseline log-odds. Loading
rebuilds scikit-learn's own ``TreePredictor`` objects from those arrays and sums their raw predictions, so
the loaded model scores exactly like the fitted one. The node layout is scikit-learn's internal one, so a
file records the scikit-learn version it came from and refuses to load under another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf")


class ModelFormatError(ValueError):
    """A stored model cannot be loaded (wrong format, version or content)."""


@dataclass(frozen=True)
class BoostedTrees:
    """A binary boosted-tree classifier: ``logit(x) = baseline + Σ_trees leaf_value(x)``.

    Attributes
    ----------
    baseline : the initial log-odds.
    trees : node arrays with scikit-learn's ``PREDICTOR_RECORD_DTYPE``.
    n_features : number of input features.
    """

    baseline: float
    trees: tuple[np.ndarray, ...]
    n_features: int

    @classmethod
    def from_sklearn(cls, clf: HistGradientBoostingClassifier) -> BoostedTrees:
        """Export a fitted binary classifier without categorical features."""
        if clf.n_trees_per_iteration_ != 1:
            raise ModelFormatError("only binary classifiers can be exported")
        if clf.is_categorical_ is not None:
            raise ModelFormatError("classifiers with categorical features cannot be exported")
        trees = tuple(it[0].nodes.copy() for it in clf._predictors)
        return cls(float(clf._baseline_prediction.ravel()[0]), trees, int(clf.n_features_in_))

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class for each row of ``x`` ``(n, n_features)``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected an array of shape (n, {self.n_features}), got {x.shape}")
        empty = np.zeros((0, 8), dtype=np.uint32)
        known = np.zeros((0, 8), dtype=np.uint32)
        f_idx_map = np.zeros(self.n_features, dtype=np.uint32)
        out = np.full(x.shape[0], self.baseline)
        for nodes in self.trees:
            out += TreePredictor(nodes, empty, empty).predict(x, known, f_idx_map, n_threads=1)
        return out

    def to_dict(self) -> dict:
        """A JSON-ready dict (floats survive ``json`` round-trips exactly)."""
        return {
            "sklearn_version": sklearn.__version__,
            "baseline": self.baseline,
            "n_features": self.n_features,
            "trees": [{f: nodes[f].tolist() for f in NODE_FIELDS} for nodes in self.trees],
        }

    @classmethod
    def from_dict(cls, data: dict) -> BoostedTrees:
        """Rebuild from :meth:`to_dict` output, checking versions, fields and tree structure."""
        try:
            version = data["sklearn_version"]
            if version != sklearn.__version__:
                raise ModelFormatError(
                    f"model was saved with scikit-learn {version}, this is {sklearn.__version__}; retrain it"
                )
            n_features = int(data["n_features"])
            trees = tuple(_nodes(t, n_features) for t in data["trees"])
            return cls(float(data["baseline"]), trees, n_features)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFormatError):
                raise
            raise ModelFormatError(f"malformed tree model: {exc!r}") from exc


def _nodes(tree: dict, n_features: int) -> np.ndarray:
    lengths = {len(tree[f]) for f in NODE_FIELDS}
    if len(lengths) != 1 or not lengths.pop():
        raise ModelFormatError("tree node fields have different or zero lengths")
    nodes = np.zeros(len(tree["value"]), dtype=PREDICTOR_RECORD_DTYPE)
    for f in NODE_FIELDS:
        nodes[f] = np.asarray(tree[f], dtype=PREDICTOR_RECORD_DTYPE[f])
    inner = nodes["is_leaf"] == 0
    n = len(nodes)
    children = np.concatenate([nodes["left"][inner], nodes["right"][inner]]).astype(np.int64)
    if (children >= n).any() or (children <= 0).any():
        raise ModelFormatError("tree child index out of range")
    feats = nodes["feature_idx"][inner]
    if (feats < 0).any() or (feats >= n_features).any():
        raise ModelFormatError("tree split feature out of range")
    return nodes
