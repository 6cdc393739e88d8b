"""Plain-JSON views of blocks and transactions (for ``gridledger inspect`` and the node API)."""

from __future__ import annotations

import dataclasses
from enum import Enum

from gridledger.ledger.assets import split_outpoint
from gridledger.ledger.block import Block
from gridledger.ledger.transactions import Transaction


def _plain(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Enum):
        return value.name
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def tx_json(tx: Transaction) -> dict:
    out = {"kind": tx.KIND.name.lower(), "txid": tx.txid.hex()}
    out.update(_plain(tx))
    if "inputs" in out:
        out["inputs"] = [{"txid": t.hex(), "index": i} for t, i in map(split_outpoint, tx.inputs)]
    return out


def block_json(block: Block) -> dict:
    h = block.header
    return {
        "height": h.height,
        "hash": h.hash.hex(),
        "prev_hash": h.prev_hash.hex(),
        "merkle_root": h.merkle_root.hex(),
        "time": h.time,
        "proposer": h.proposer.hex(),
        "signature": block.signature.hex(),
        "certificate": [{"pubkey": v.pubkey.hex(), "signature": v.signature.hex()} for v in block.certificate],
        "transactions": [tx_json(tx) for tx in block.transactions],
    }
