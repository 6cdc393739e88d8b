"""A synthetic chain workload that writes every store table: for the store benchmark, the store tests and crash test.

Every block holds one meter issue (FA and EPA to prosumers: the ``issued``, ``fa_issued`` and ``nonces``
tables), transfers that spend earlier outputs and split them over many new ones (``utxos``: deletes and
inserts), an EPA split in power now and then, and every ``policy_every`` blocks a DSO price change
(``policies``). All keys come from fixed secrets, so a process that reopens a store after a crash finds its
coins again in the unspent outputs and carries on; only the choices (which coins, which amounts) use ``rng``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gridledger.chain import Chain
from gridledger.ledger.assets import EPA, FA, Asset, AssetKind, Output, outpoint
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.petra.dso import DSO
from gridledger.store import open_store
from gridledger.store.base import Store

START_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z
BLOCK_SECONDS = 60
METERS = 4
PROSUMER_KEYS = 64
ISSUE_FA = 1_000_000  # minor units per meter issue
ISSUE_EPA_W = 1_000
LIMIT = 2**53  # MAXEPA = MAXECA (W) and FA credit: never the binding constraint here

DSO_KEY = KeyPair.from_secret("workload-dso")
COORDINATOR = KeyPair.from_secret("workload-coordinator")
METER_KEYS = {f"WM{i}": KeyPair.from_secret(f"workload-meter-{i}") for i in range(METERS)}
PROSUMERS = [KeyPair.from_secret(f"workload-prosumer-{i}") for i in range(PROSUMER_KEYS)]
_BY_ADDRESS = {k.address: k for k in PROSUMERS}
GENESIS = Genesis("workload", DEFAULT_SLOT_SECONDS, START_TIME, DSO_KEY.public, (COORDINATOR.public,))


def split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` as ``min(parts, total)`` positive integers that add up to it, at random cut points."""
    parts = max(1, min(parts, total))
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


@dataclass
class Workload:
    """Drives ``chain`` block by block; ``coins`` are the unspent outputs its prosumer keys own."""

    chain: Chain
    rng: random.Random
    txs_per_block: int = 8
    outputs_per_tx: int = 16
    policy_every: int = 16
    coins: dict[bytes, Output] = field(default_factory=dict)

    @classmethod
    def start(cls, store: Store, rng: random.Random, *, replay: bool = False, **sizes) -> Workload:
        """Start a chain in an empty ``store``, or carry on with the one it holds (e.g. after a crash).

        A new chain gets its genesis block, then the DSO's first policy (authorizing the meters) as block 1;
        either may be missing after a crash, so both are checked on every start. Carrying on finds the
        prosumers' coins again among the stored unspent outputs.
        """
        if store.tip_height() is None:
            chain = Chain.create(store, GENESIS, COORDINATOR, START_TIME)
        else:
            chain = Chain.open(store, replay=replay)
        coins = {}
        for op, raw in chain.state.utxos.items():
            out = Output.decode(raw)
            if out.owner in _BY_ADDRESS:
                coins[op] = out
        work = cls(chain, rng, coins=coins, **sizes)
        if chain.state.policy.nonce == 0:
            limits = [MeterLimits(m, LIMIT, LIMIT, LIMIT) for m in METER_KEYS]
            pubkeys = {m: k.public for m, k in METER_KEYS.items()}
            chain.submit(work._dso().policy(0, prices=(120, 80), authorize=pubkeys, limits=limits))
            work._propose()
        return work

    def _dso(self) -> DSO:
        return DSO(DSO_KEY, self.chain.chain_id, nonce=self.chain.state.policy.nonce)

    def _address(self) -> bytes:
        return self.rng.choice(PROSUMERS).address

    def _propose(self) -> Block:
        state = self.chain.state
        res = self.chain.propose(COORDINATOR, state.tip_time + BLOCK_SECONDS)
        if res.rejected or res.block is None:
            raise RuntimeError(f"workload block rejected: {[str(r) for r in res.rejected.values()]}")
        for tx in res.block.transactions:
            for op in getattr(tx, "inputs", ()):
                self.coins.pop(op, None)
            for i, out in enumerate(getattr(tx, "outputs", ())):
                if out.owner in _BY_ADDRESS:
                    self.coins[outpoint(tx.txid, i)] = out
        return res.block

    def step(self) -> Block:
        """Build, propose and commit the next block; return it."""
        state, chain, rng = self.chain.state, self.chain, self.rng
        height = state.height + 1
        slot = state.slot_of(state.tip_time + BLOCK_SECONDS)
        meter = f"WM{height % METERS}"
        issue = MeterIssue(
            meter,
            state.nonces.get(meter, 0) + 1,
            (
                Output(FA(ISSUE_FA), self._address()),
                Output(EPA(ISSUE_EPA_W, slot + 1, slot + 3), self._address()),
            ),
        )
        chain.submit(issue.signed(chain.chain_id, METER_KEYS[meter]))
        if height % self.policy_every == 0:
            prices = (rng.randrange(50, 200), rng.randrange(20, 120))
            chain.submit(self._dso().policy(slot, prices=prices))
        fa = [op for op, o in self.coins.items() if o.asset.kind == AssetKind.FA]
        epa = [op for op, o in self.coins.items() if o.asset.kind == AssetKind.EPA and o.asset.amount > 1]
        rng.shuffle(fa)
        for _ in range(self.txs_per_block):
            take = [fa.pop() for _ in range(min(len(fa), rng.randint(1, 3)))]
            if not take:
                break
            total = sum(self.coins[op].asset.amount for op in take)
            outs = [Output(FA(a), self._address()) for a in split(total, self.outputs_per_tx, rng)]
            self._submit_transfer(take, outs)
        if epa:
            op = rng.choice(epa)
            a = self.coins[op].asset
            parts = split(a.amount, 2, rng)
            outs = [Output(Asset(a.kind, p, a.start, a.end), self._address()) for p in parts]
            self._submit_transfer([op], outs)
        return self._propose()

    def _submit_transfer(self, inputs: list[bytes], outputs: list[Output]) -> None:
        keys = {op: _BY_ADDRESS[self.coins[op].owner] for op in inputs}
        self.chain.submit(Transfer(tuple(inputs), tuple(outputs)).signed(self.chain.chain_id, keys))


def commit_forever(url: str, seed: int, report, **sizes) -> None:
    """Open the store at ``url`` and commit workload blocks until killed: the crash test's writer process.

    ``report`` (a ``multiprocessing`` connection) gets ``R`` once the process is ready, then around every
    ``commit_block``: ``B height`` just before the call and ``C height hash`` as soon as it returned; an
    exception is sent as ``E`` and its text.
    """
    try:
        store = open_store(url)
        commit = store.commit_block

        def reporting_commit(height: int, block_hash: bytes, *rest) -> None:
            report.send_bytes(b"B %d" % height)
            commit(height, block_hash, *rest)
            report.send_bytes(b"C %d %s" % (height, block_hash.hex().encode()))

        store.commit_block = reporting_commit
        report.send_bytes(b"R")
        work = Workload.start(store, random.Random(seed), **sizes)
        while True:
            work.step()
    except Exception as e:
        report.send_bytes(b"E " + repr(e).encode())
