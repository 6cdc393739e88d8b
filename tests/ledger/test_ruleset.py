"""The rule set is a value the genesis names: a block is judged by it, in any process, whatever was imported."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridledger.chain import Chain, verify_store
from gridledger.cli import app
from gridledger.demo import run_demo
from gridledger.ledger.block import ZERO_HASH, Vote, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import Reading, sealed_size
from gridledger.ledger.ruleset import RULESETS, Consensus, Tier
from gridledger.ledger.state import StateChanges
from gridledger.store.sqlite import SqliteStore
from gridledger.tiers.hierarchy import Hierarchy

T0 = 1_767_225_600
DSO, COORDINATOR, MEMBER = (KeyPair.from_secret(s) for s in ("rs-dso", "rs-coordinator", "rs-member"))

#: Run in a fresh interpreter: verify every store given, using only the core, the chain and the stores.
VERIFIER = """
import json, sys
from gridledger.chain import verify_store
from gridledger.ledger.block import Block
from gridledger.store.sqlite import SqliteStore
out = {}
for path in sys.argv[1:]:
    store = SqliteStore(path)
    state = verify_store(store)
    kinds = sorted({tx.KIND.name for _, raw in store.iter_blocks(0) for tx in Block.decode(raw).transactions})
    votes = sum(len(Block.decode(raw).certificate) for _, raw in store.iter_blocks(1))
    out[path] = [state.ruleset.name, state.height, kinds, votes]
    store.close()
extra = sorted(m for m in sys.modules if m.split(".")[:2] in
               (["gridledger", p] for p in ("tiers", "consensus", "market", "petra", "node")))
print(json.dumps({"chains": out, "extra": extra}))
"""


def test_every_tier_and_petra_verify_with_the_core_alone(tmp_path: Path) -> None:
    h = Hierarchy(fans=1, nans=1, homes=1, appliances=1, directory=tmp_path / "tiers", summary_minutes=2)
    try:
        h.run(4)
        h.settle()
    finally:
        h.close()
    run_demo(tmp_path / "demo")
    stores = sorted(str(p) for p in (tmp_path / "tiers").glob("*coordinator*.sqlite"))
    stores.append(str(tmp_path / "demo" / "chain.sqlite"))
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.run(
        [sys.executable, "-c", VERIFIER, *stores], capture_output=True, text=True, env={"PYTHONPATH": src}
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["extra"] == [], "the verifier imported more than the core, the chain and the stores"
    by_ruleset = {}
    for name, height, kinds, votes in result["chains"].values():
        by_ruleset.setdefault(name, []).append((height, set(kinds), votes))
    assert set(by_ruleset) == {"petra", "han", "nan", "fan", "head"}
    # each verified chain holds what its tier is for, certified by its committee (PoEf) or not (petra)
    wanted = {"han": {"READING"}, "nan": {"READING", "ANCHOR"}, "fan": {"READING", "ANCHOR"}, "head": {"ANCHOR"}}
    for name, kinds in wanted.items():
        assert any(kinds <= k and votes > 0 for _, k, votes in by_ruleset[name]), (name, by_ruleset[name])
    assert all({"TRANSFER", "METER_ISSUE"} <= k and votes == 0 for _, k, votes in by_ruleset["petra"])


def test_the_rule_sets_of_the_tiers() -> None:
    assert RULESETS["petra"].consensus is Consensus.COORDINATOR and RULESETS["petra"].tier is None
    for tier in Tier:
        rs = RULESETS[tier.value]
        assert (rs.tier, rs.consensus, rs.block_checks != ()) == (tier, Consensus.POEF, True)
        assert rs.committee_size > 0
    assert "TRANSFER" not in {k.name for k in RULESETS["han"].kinds}
    assert "REWARD" in {k.name for k in RULESETS["nan"].kinds}


# --------------------------------------------------------------------- one block, two rule sets


def _chains(tmp_path: Path) -> dict[str, Chain]:
    """Two chains with identical genesis but for the rule set, each with member M0 enrolled in block 1."""
    chains = {}
    for name in ("petra", "nan"):
        genesis = Genesis("same-name", 900, T0, DSO.public, (COORDINATOR.public,), ruleset=name)
        chain = Chain.create(SqliteStore(tmp_path / f"{name}.sqlite"), genesis, COORDINATOR, T0)
        enrol = DsoPolicy(1, 0, authorize=(("M0", MEMBER.public),)).signed(chain.chain_id, DSO)
        chain.append(make_block(chain.chain_id, 1, chain.state.tip_hash, T0 + 1, (enrol,), COORDINATOR))
        chains[name] = chain
    return chains


def _block(chain: Chain, *txs, vote: bool = False):
    block = make_block(chain.chain_id, 2, chain.state.tip_hash, T0 + 120, txs, COORDINATOR)
    if not vote:
        return block
    votes = (Vote(MEMBER.public, MEMBER.sign(block.header.signing_message())),)
    return make_block(chain.chain_id, 2, chain.state.tip_hash, T0 + 120, txs, COORDINATOR, votes)


def _reading(chain: Chain) -> Reading:
    return Reading(0, 1, 0, bytes(sealed_size(0))).signed(chain.chain_id, MEMBER)


def test_a_reading_is_valid_on_nan_and_not_on_petra(tmp_path: Path) -> None:
    chains = _chains(tmp_path)
    chains["nan"].append(_block(chains["nan"], _reading(chains["nan"]), vote=True))
    petra = chains["petra"]
    with pytest.raises(Reject) as e:
        petra.append(_block(petra, _reading(petra), vote=True))
    assert (e.value.code, e.value.height, e.value.tx_index) == ("bad-tx-kind-not-in-ruleset", 2, 0)
    assert "petra v1" in e.value.message and "READING" in e.value.message
    with pytest.raises(Reject, match="rule set petra v1 has no READING"):
        petra.submit(_reading(petra))


def test_a_block_without_certificate_is_valid_on_petra_and_not_on_nan(tmp_path: Path) -> None:
    chains = _chains(tmp_path)
    for chain in chains.values():
        policy = DsoPolicy(2, 10, prices=(100, 80)).signed(chain.chain_id, DSO)
        if chain.state.ruleset.name == "petra":
            chain.append(_block(chain, policy))
        else:
            with pytest.raises(Reject) as e:
                chain.append(_block(chain, policy))
            assert e.value.code == "bad-qc-insufficient"
            chain.append(_block(chain, policy, vote=True))
        assert chain.height == 2
        verify_store(chain.store)


# --------------------------------------------------------------------- stores the software cannot judge


def _raw_store(path: Path, genesis: Genesis, *more) -> SqliteStore:
    """A store holding blocks as given, unvalidated (as a store from elsewhere would)."""
    store = SqliteStore(path)
    block = make_block(genesis.chain_id, 0, ZERO_HASH, T0, (genesis,), COORDINATOR)
    store.commit_block(0, block.hash, T0, block.encode(), StateChanges())
    for i, txs in enumerate(more, start=1):
        block = make_block(genesis.chain_id, i, block.hash, T0 + i, txs, COORDINATOR)
        store.commit_block(i, block.hash, T0 + i, block.encode(), StateChanges())
    return store


def _digest(path: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))).hexdigest()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ruleset": "wan"}, "names rule set 'wan' v1, which this software does not know"),
        ({"ruleset": "nan", "ruleset_version": 9}, "names rule set nan v9; this software implements nan v1"),
    ],
)
def test_a_genesis_naming_an_unknown_or_newer_rule_set(tmp_path: Path, changes: dict, message: str) -> None:
    genesis = replace(Genesis("odd", 900, T0, DSO.public, (COORDINATOR.public,)), **changes)
    path = tmp_path / "odd.sqlite"
    store = _raw_store(path, genesis)
    for attempt in (lambda: verify_store(store), lambda: Chain.open(store), lambda: Chain.open(store, replay=True)):
        with pytest.raises(Reject) as e:
            attempt()
        assert e.value.code == "bad-genesis-ruleset" and message in e.value.message
    store.close()
    before = _digest(path)
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 2, result.output
    assert "cannot verify" in result.output and message in " ".join(result.output.split())
    assert _digest(path) == before, "verify wrote to the store"


def test_a_stored_block_with_a_kind_its_rule_set_lacks(tmp_path: Path) -> None:
    genesis = Genesis("petra-chain", 900, T0, DSO.public, (COORDINATOR.public,))
    path = tmp_path / "petra.sqlite"
    store = _raw_store(path, genesis, (Reading(0, 1, 0, bytes(sealed_size(0))).signed(genesis.chain_id, MEMBER),))
    with pytest.raises(Reject) as e:
        verify_store(store)
    assert (e.value.code, e.value.height, e.value.tx_index) == ("bad-tx-kind-not-in-ruleset", 1, 0)
    assert e.value.message == "rule set petra v1 has no READING transactions"
    store.close()
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 1 and "rule set petra v1 has no READING transactions" in " ".join(result.output.split())
