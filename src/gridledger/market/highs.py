"""A thin, deterministic call into the HiGHS solver (``highspy``) for sparse LP/MILP models."""

from __future__ import annotations

from dataclasses import dataclass, field

import highspy
import numpy as np
from scipy import sparse


@dataclass
class Model:
    """``minimize cost @ x`` s.t. ``row_lower <= A x <= row_upper``, ``lower <= x <= upper``.

    Build it column block by column block (:meth:`add_cols`) and row block by row block
    (:meth:`add_rows`, with the nonzeros as (row, col, value) triplets); ``inf`` means unbounded.
    """

    cost: list[np.ndarray] = field(default_factory=list)
    lower: list[np.ndarray] = field(default_factory=list)
    upper: list[np.ndarray] = field(default_factory=list)
    integer: list[np.ndarray] = field(default_factory=list)
    row_lower: list[np.ndarray] = field(default_factory=list)
    row_upper: list[np.ndarray] = field(default_factory=list)
    triplets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    num_cols: int = 0
    num_rows: int = 0

    def add_cols(self, cost, lower, upper, integer: bool = False) -> np.ndarray:
        """Append columns; return their indexes."""
        cost = np.asarray(cost, dtype=np.float64)
        n = len(cost)
        self.cost.append(cost)
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,)))
        self.integer.append(np.full(n, integer))
        self.num_cols += n
        return np.arange(self.num_cols - n, self.num_cols)

    def add_rows(self, count: int, lower, upper, rows, cols, values) -> None:
        """Append ``count`` rows; ``rows`` index them from 0."""
        self.row_lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)))
        self.row_upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)))
        self.triplets.append(
            (
                np.asarray(rows, dtype=np.int64) + self.num_rows,
                np.asarray(cols, dtype=np.int64),
                np.broadcast_to(np.asarray(values, dtype=np.float64), (len(rows),)),
            )
        )
        self.num_rows += count

    def solve(self, relax: bool = False) -> np.ndarray:
        """Solve to proven optimality and return the column values.

        A MILP is solved to a zero relative gap; ``relax=True`` drops integrality (LP relaxation).
        Pure LPs skip presolve, which only costs time on these sparse, already reduced models.
        """
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = self.num_cols, self.num_rows
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = _cat(self.cost), _cat(self.lower), _cat(self.upper)
        lp.row_lower_, lp.row_upper_ = _cat(self.row_lower), _cat(self.row_upper)
        rows, cols, values = (_cat([t[i] for t in self.triplets]) for i in range(3))
        a = sparse.csc_matrix((values, (rows, cols)), shape=(self.num_rows, self.num_cols))
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
        integer = _cat(self.integer).astype(bool) & (not relax)
        if integer.any():
            lp.integrality_ = [
                highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in integer
            ]
        solver = highspy.Highs()
        solver.setOptionValue("output_flag", False)
        solver.setOptionValue("mip_rel_gap", 0.0)
        if not integer.any():
            solver.setOptionValue("presolve", "off")
        solver.passModel(lp)
        solver.run()
        status = solver.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS did not reach an optimum: {solver.modelStatusToString(status)}")
        return np.asarray(solver.getSolution().col_value, dtype=np.float64)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def to_int(values: np.ndarray, tolerance: float = 1e-6) -> np.ndarray | None:
    """Round solver output to int64, or ``None`` if any value is further than ``tolerance`` from one."""
    rounded = np.rint(values)
    if values.size and np.abs(values - rounded).max() > tolerance:
        return None
    return rounded.astype(np.int64)
