"""Conservation (PETra's transfer rule) as properties: per slot and asset kind, nothing is created or lost.

``recompose`` draws an arbitrary valid re-cutting of a set of assets: rectangles (power × slot interval) that
tile the same per-slot power profile, so it covers splits and merges in power and in time at once. On the
rule itself, every recomposition passes and every perturbation fails with the right code. On a chain,
random split/merge sequences run through a wallet, block after block (some with a cheating transfer mixed in,
which the coordinator must drop), and after every block the per-slot totals of the state's unspent outputs
equal what the meters issued; the store holds the same outputs and the wallet knows exactly its coins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.ledger.assets import ECA, EPA, FA, Asset, AssetKind, Output
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.transfer import Transfer, check_conservation
from gridledger.petra.wallet import Wallet, combine

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Net

ENERGY = (AssetKind.EPA, AssetKind.ECA)
#: Greedy completion after this many drawn rectangles keeps a recomposition within a few dozen outputs.
MAX_DRAWN_PIECES = 12


def profile(assets: Iterable[Asset]) -> tuple[Counter, int]:
    """(per (kind, slot) power in W, total FA) of a set of assets."""
    power, fa = Counter(), 0
    for a in assets:
        if a.kind == AssetKind.FA:
            fa += a.amount
        else:
            for t in a.slots:
                power[(a.kind, t)] += a.amount
    return +power, fa


def recompose(draw, assets: list[Asset]) -> list[Asset]:
    """A random set of assets with the same per-kind, per-slot profile as ``assets``."""
    power, fa = profile(assets)
    out: list[Asset] = []
    for kind in ENERGY:
        rem = {t: p for (k, t), p in power.items() if k == kind}
        drawn = 0
        while any(rem.values()):
            s = min(t for t, p in rem.items() if p)
            run_end = s
            while rem.get(run_end, 0) > 0:
                run_end += 1
            greedy = drawn >= MAX_DRAWN_PIECES
            e = run_end if greedy else draw(st.integers(s + 1, run_end))
            m = min(rem[t] for t in range(s, e))
            p = m if greedy else draw(st.integers(1, m))
            for t in range(s, e):
                rem[t] -= p
            out.append(Asset(kind, p, s, e))
            drawn += 1
    if fa:
        cuts = sorted(set(draw(st.lists(st.integers(1, fa - 1), max_size=3)) if fa > 1 else []))
        bounds = [0, *cuts, fa]
        out += [FA(b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    return draw(st.permutations(out))


@st.composite
def energy_assets(draw, kind: AssetKind, max_power: int = 1_000, slots: tuple[int, int] = (0, 10)) -> Asset:
    start = draw(st.integers(slots[0], slots[1] - 1))
    end = draw(st.integers(start + 1, min(slots[1], start + 6)))
    return Asset(kind, draw(st.integers(1, max_power)), start, end)


any_assets = st.lists(
    st.one_of(energy_assets(AssetKind.EPA), energy_assets(AssetKind.ECA), st.integers(1, 10_000).map(FA)),
    min_size=1,
    max_size=6,
)


def perturb(draw, outputs: list[Asset]) -> tuple[list[Asset], str]:
    """One change to one output breaks conservation; gives the outputs and the code that must reject them."""
    i = draw(st.integers(0, len(outputs) - 1))
    a = outputs[i]
    how = "amount" if a.kind == AssetKind.FA else draw(st.sampled_from(["amount", "end", "start"]))
    if how == "amount":
        b = replace(a, amount=a.amount + (1 if a.amount == 1 else draw(st.sampled_from([1, -1]))))
    elif how == "end" or a.end - a.start == 1:
        b = replace(a, end=a.end + 1)
    else:
        b = replace(a, start=a.start + 1)
    return [*outputs[:i], b, *outputs[i + 1 :]], f"bad-txns-{a.kind.name.lower()}-conservation"


# --------------------------------------------------------------------------- the rule


@settings(max_examples=100, deadline=None)
@given(any_assets, st.data())
def test_every_recomposition_conserves(inputs: list[Asset], data: st.DataObject) -> None:
    outputs = recompose(data.draw, inputs)
    assert profile(outputs) == profile(inputs)
    check_conservation(inputs, outputs)
    check_conservation(outputs, inputs)


@settings(max_examples=100, deadline=None)
@given(any_assets, st.data())
def test_every_perturbation_breaks_conservation(inputs: list[Asset], data: st.DataObject) -> None:
    outputs, code = perturb(data.draw, recompose(data.draw, inputs))
    with pytest.raises(Reject) as e:
        check_conservation(inputs, outputs)
    assert e.value.code == code


def test_conservation_examples() -> None:
    """The paper's cases by hand: merge and split in power and in time; kinds never mix."""
    check_conservation([EPA(300, 0, 4)], [EPA(100, 0, 4), EPA(200, 0, 2), EPA(200, 2, 4)])
    check_conservation([ECA(50, 0, 2), ECA(50, 2, 5), ECA(20, 0, 5)], [ECA(70, 0, 5)])
    check_conservation([FA(7), FA(3)], [FA(10)])
    for inputs, outputs, code in [
        ([EPA(300, 0, 4)], [EPA(300, 0, 3)], "bad-txns-epa-conservation"),
        ([EPA(300, 0, 4)], [ECA(300, 0, 4)], "bad-txns-epa-conservation"),
        ([ECA(300, 0, 4)], [ECA(300, 1, 5)], "bad-txns-eca-conservation"),
        ([FA(10)], [FA(9)], "bad-txns-fa-conservation"),
        ([FA(10)], [FA(10), EPA(1, 0, 1)], "bad-txns-epa-conservation"),
    ]:
        with pytest.raises(Reject) as e:
            check_conservation(inputs, outputs)
        assert e.value.code == code


# --------------------------------------------------------------------------- through a wallet, on a chain


def chain_profile(net: Net) -> tuple[Counter, int]:
    return profile(Output.decode(raw).asset for raw in net.state.utxos.values())


def spendable(w: Wallet, used: set[bytes], kind: AssetKind | None = None) -> list[bytes]:
    """Unused coins in the order the wallet received them (outpoints are random: fresh keys each run)."""
    return [op for op, o in w.coins.items() if op not in used and (kind is None or o.asset.kind == kind)]


def draw_move(draw, w: Wallet, used: set[bytes]) -> Transfer | None:
    """A valid split/merge transfer of unused coins of the wallet to fresh addresses of its own (or None).

    ``leg``: the wallet's own coin selection pays a random sub-rectangle of one coin (power and time split);
    ``recompose``: one to three coins of a kind are re-cut at random (merges and splits together).
    """
    if draw(st.sampled_from(["recompose", "leg"])) == "leg":
        energy = [op for op in spendable(w, used) if w.coins[op].asset.is_energy]
        if not energy:
            return None
        coin = w.coins[draw(st.sampled_from(energy))].asset
        start = draw(st.integers(coin.start, coin.end - 1))
        want = Asset(
            coin.kind, draw(st.integers(1, coin.amount)), start, draw(st.integers(start + 1, coin.end))
        )
        tx = combine(w.leg(want, w.new_address(), exclude=used))
    else:
        ops = spendable(w, used, draw(st.sampled_from(AssetKind)))
        if not ops:
            return None
        ops = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=3, unique=True))
        outs = recompose(draw, [w.coins[op].asset for op in ops])
        tx = Transfer(tuple(ops), tuple(Output(a, w.new_address()) for a in outs))
    used.update(tx.inputs)
    return tx


def draw_cheat(draw, w: Wallet, used: set[bytes]) -> tuple[Transfer, str] | None:
    ops = spendable(w, used)
    if not ops:
        return None
    ops = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    outs, code = perturb(draw, recompose(draw, [w.coins[op].asset for op in ops]))
    used.update(ops)
    return Transfer(tuple(ops), tuple(Output(a, w.new_address()) for a in outs)), code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(energy_assets(AssetKind.EPA, slots=(1, 9)), min_size=1, max_size=4),
    st.lists(energy_assets(AssetKind.ECA, slots=(1, 9)), min_size=1, max_size=4),
    st.lists(st.integers(1, 20_000).map(FA), max_size=3),
    st.data(),
)
def test_split_merge_sequences_keep_what_was_issued(
    new_net: Callable[..., Net], epa: list[Asset], eca: list[Asset], fa: list[Asset], data: st.DataObject
) -> None:
    net = new_net(funded=False)
    w = net.wallets["mixer"] = Wallet()
    net.commit(
        net.issue("MI1", *((a, w.new_address()) for a in epa + fa)),
        net.issue("MI2", *((a, w.new_address()) for a in eca)),
    )
    issued = profile(epa + eca + fa)
    assert chain_profile(net) == issued
    for _ in range(data.draw(st.integers(1, 4), label="blocks")):
        used: set[bytes] = set()
        moves = [m for m in (draw_move(data.draw, w, used) for _ in range(data.draw(st.integers(1, 3)))) if m]
        cheat = draw_cheat(data.draw, w, used) if data.draw(st.booleans(), label="cheat") else None
        txs = [w.sign(tx, net.chain_id) for tx in moves + ([cheat[0]] if cheat else [])]
        for tx in txs:
            net.chain.submit(tx)
        res = net.chain.propose(net.coordinator, net.tick())
        if cheat:
            (rejected,) = res.rejected.values()
            assert rejected.code == cheat[1]
        assert len(res.rejected) == (1 if cheat else 0)
        if res.block is not None:
            assert len(res.block.transactions) == len(moves)
            net.scan(res.block)
        # After every block: totals per kind and slot are what was issued; store, state and wallet agree.
        assert chain_profile(net) == issued
        assert net.store.snapshot()["utxos"] == net.state.utxos
        assert {op: o.encode() for op, o in w.coins.items()} == net.state.utxos
