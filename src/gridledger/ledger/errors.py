"""Reject codes: every validity rule fails with one short, stable code and a specific message.

Codes follow Bitcoin Core's style (``bad-txns-inputs-missingorspent``): the prefix says what was checked
(``bad-encoding``, ``bad-asset``, ``bad-txns``, ``bad-issue``, ``bad-policy``, ``bad-blk``, ``bad-chain``).
The full list, with the rule each code guards, is in docs/ledger.md.
"""

from __future__ import annotations


class Reject(Exception):
    """A consensus object broke a validity rule.

    Parameters
    ----------
    code : stable machine-readable reject code, e.g. ``bad-txns-inputs-missingorspent``.
    message : what exactly was wrong, for a person.
    tx_index : index of the offending transaction in its block, when known.
    height : height of the offending block, when known.
    """

    def __init__(self, code: str, message: str, *, tx_index: int | None = None, height: int | None = None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.tx_index = tx_index
        self.height = height

    def at(self, *, tx_index: int | None = None, height: int | None = None) -> Reject:
        """Return the same reject located at a transaction index and/or block height."""
        return Reject(
            self.code,
            self.message,
            tx_index=self.tx_index if tx_index is None else tx_index,
            height=self.height if height is None else height,
        )

    def __str__(self) -> str:
        where = []
        if self.height is not None:
            where.append(f"block {self.height}")
        if self.tx_index is not None:
            where.append(f"tx {self.tx_index}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.code}: {self.message}"
