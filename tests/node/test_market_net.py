"""The PETra market across processes (``gridledger cluster up --community``): real etcd, node, relay, bid-store and
prosumer processes on loopback TCP; orders over onion circuits; trades and deposits committed under PoEf.

One 4-home community runs for the whole module (15 s slots), secure by default (the cluster's CA, HTTPS node APIs
that every market process verifies); each test waits for what it needs from the live rounds. The last test that uses
it kills the primary concentrator; the one before it kills the active bid store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.cli.node import cluster_app
from gridledger.client import NodeClient
from gridledger.ledger.assets import AssetKind
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.node import cluster
from gridledger.node.market import (
    BIDSTORE_ID,
    LEASE_POLL_S,
    PROBE,
    STANDBY_ID,
    STATUS_FILE,
    TAKEOVER_S,
    MarketPlan,
    Replica,
    StoreLease,
    bills_path,
    live_relays,
    open_circuit,
    prosumer_name,
    relay_name,
)
from gridledger.node.market_up import _start
from gridledger.petra.onchain import Move, classify
from gridledger.petra.onion import OnionNode, RelayDirectory

pytestmark = pytest.mark.slow
SLOT_S = 15
HOMES = [("MI001", 3.0), ("MI002", 0.0), ("MI003", 2.0), ("MI004", 0.0)]
COMMUNITY = """
[community]
name = "Four homes"
location = "morelia"
slot_seconds = 900
start = 2024-04-11
days = 1

[prices]
consumption_per_kwh = 120
production_per_kwh = 60

[dso]
max_epa_w = 10000
max_eca_w = 10000
credit_fa = 100000

[[feeders]]
id = "F1"
internal_capacity_w = 20000
external_capacity_w = 10000
""" + "".join(f'\n[[homes]]\nid = "{m}"\nfeeder = "F1"\nannual_kwh = 2500.0\npv_kw = {pv}\n' for m, pv in HOMES)


@pytest.fixture(scope="module")
def community(tmp_path_factory):
    requires.etcd()
    base = tmp_path_factory.mktemp("market")
    (base / "community.toml").write_text(COMMUNITY)
    folder = base / "net"
    result = CliRunner().invoke(
        cluster_app,
        [
            "up",
            "--community",
            str(base / "community.toml"),
            "--slot-seconds",
            str(SLOT_S),
            "--dir",
            str(folder),
        ],
        env={"COLUMNS": "200"},
    )
    try:
        assert result.exit_code == 0, result.output
        assert "community of 4 homes" in result.output and "TLS: every node API" in result.output
        assert "WARNING" not in result.output
        yield folder
    finally:
        if (folder / cluster.STATE_FILE).exists():
            cluster.down(folder)


def status(folder: Path) -> dict:
    path = folder / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else {"rounds": [], "senders": [], "refused": {}}


def settled(folder: Path) -> list[dict]:
    """The rounds whose trades and deposits are all committed (at least one of each)."""
    return [
        r
        for r in status(folder)["rounds"]
        if r["trades"] and r["committed_trades"] == len(r["trades"]) and r["committed_deposits"] > 0
    ]


def wait_rounds(folder: Path, n: int, after: int = 0, timeout: float = 150.0) -> list[dict]:
    """Wait until ``n`` rounds for slots after ``after`` are settled."""
    deadline = time.monotonic() + timeout
    while len(done := [r for r in settled(folder) if r["slot"] > after]) < n:
        assert time.monotonic() < deadline, json.dumps(status(folder), indent=1)
        time.sleep(1)
    return done


def operator_client(folder: Path, node: str = "DC1") -> NodeClient:
    state = json.loads((folder / cluster.STATE_FILE).read_text())
    url = next(n["url"] for n in state["nodes"] if n["id"] == node)
    key = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    return NodeClient(url, "operator", key, timeout=5, ca=state["ca"])


def test_two_rounds_commit_trades_and_deposits_on_the_nan_chain(community):
    rounds = wait_rounds(community, 2)
    with operator_client(community) as dc1:
        assert any(r["orders"] == len(HOMES) for r in rounds)  # a round where every home's mix and order went through
        for r in rounds[:2]:
            assert r["matched_w"] > 0
            for txid in r["trades"] + r["deposits"]:
                st = dc1.tx_status(bytes.fromhex(txid))
                assert st["status"] == "committed", (txid, st)
                block = dc1.block(st["height"])
                assert txid in {tx["txid"] for tx in block["transactions"]}
        replica = Replica(MarketPlan.load(community).genesis, dc1)
        replica.sync()  # every block re-validated from the genesis: the chain holds the market under PoEf
        transfers = [tx for b in replica.chain.blocks(1) for tx in b.transactions if isinstance(tx, Transfer)]
        market = dc1.call("GET", "/v1/dashboard", signed=False)["market"]
    trade_ids = {t for r in rounds[:2] for t in r["trades"]}
    assert trade_ids <= {tx.txid.hex() for tx in transfers}
    # the chain alone tells the live market's transfers apart, as the dashboard reads them (no deposit addresses)
    moves = {tx.txid.hex(): classify(tx) for tx in transfers}
    listed = status(community)["rounds"]  # read after the chain: it names every trade the chain holds
    assert {t for t, m in moves.items() if m is Move.TRADE} <= {t for r in listed for t in r["trades"]}
    for r in rounds[:2]:
        assert {moves[t] for t in r["trades"]} == {Move.TRADE}
        assert {moves[t] for t in r["deposits"]} == {Move.DEPOSIT}
        assert {moves[t] for t in r["mixes"] if t in moves} <= {Move.MIX}
    assert market["total"]["trades"] >= len(trade_ids) and market["total"]["deposits"] > 0, market
    assert market["total"]["extractions"] > 0 and market["total"]["traded_wh"] > 0, market
    verified = CliRunner().invoke(app, ["verify", str(community / "MI002.sqlite")])  # a meter's own store
    assert verified.exit_code == 0, verified.output
    shown = CliRunner().invoke(cluster_app, ["status", "--dir", str(community)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "market rounds (bid store)" in shown.output
    assert f"active bid store: {BIDSTORE_ID} (since slot " in shown.output and f"standby: {STANDBY_ID})" in shown.output


def bills(folder: Path) -> dict[str, dict[int, dict]]:
    """Every meter's bills by slot, as it reported them to the DSO."""
    plan = MarketPlan.load(folder)
    out = {}
    for m in plan.prosumers:
        path = bills_path(folder, m)
        out[m] = {b["slot"]: b for b in json.loads(path.read_text())["bills"]} if path.exists() else {}
    return out


def assert_a_full_round_billed(folder: Path, after: int = 0, timeout: float = 200.0) -> dict:
    """Wait for a round for a slot after ``after`` where every order matched and every deposit committed, and that
    every meter billed; its bills settle the measured energy corrected by exactly the unit traded. Returns it."""
    plan = MarketPlan.load(folder)
    unit_ws = plan.unit_w * SLOT_S
    deadline = time.monotonic() + timeout

    def billed_full_round() -> dict | None:
        reported = bills(folder)
        for r in settled(folder):
            full = r["slot"] > after and r["orders"] == len(HOMES) and r["matched_w"] == 2 * plan.unit_w
            if (
                full
                and r["committed_deposits"] == len(r["deposits"])
                and all(r["slot"] in b for b in reported.values())
            ):
                return r
        return None

    while (r := billed_full_round()) is None:
        assert time.monotonic() < deadline, (json.dumps(status(folder), indent=1), bills(folder))
        time.sleep(1)
    reported = bills(folder)
    for m, p in plan.prosumers.items():
        bill = reported[m][r["slot"]]
        measured_ws = p.measured(r["slot"]) * 3600
        assert bill["energy_ws"] == measured_ws + (unit_ws if p.side == "offer" else -unit_ws), (m, bill)
        assert bill["eca_audit_ok"]
        assert set(bill) == {"slot", "energy_ws", "amount", "eca_audit_ok"}  # nothing that names a trade
    return r


def test_every_meter_bills_its_home_from_what_was_deposited_back(community):
    """In a round where every order matched and every deposit committed, the meters' bills of its delivery slot
    settle the measured energy corrected by exactly the unit traded: a seller's export the DSO pays for drops by
    the unit sold, a buyer's import by the unit bought."""
    assert_a_full_round_billed(community)
    shown = CliRunner().invoke(cluster_app, ["status", "--dir", str(community)], env={"COLUMNS": "200"})
    assert "bills (as the meters report them to the DSO)" in shown.output
    assert all(m in shown.output.split("bills (as the meters")[1] for m, _ in HOMES)


def test_each_concentrator_holds_the_sum_of_the_meters_bills(community):
    """Every meter reports its bills to both concentrators (``POST /v1/bills``): for each slot all four meters
    reported, DC1's and DC1-backup's aggregate equal the sums of the meters' own bills of that slot, and no report
    was refused."""
    assert_the_concentrators_sum_the_bills(community)


def assert_the_concentrators_sum_the_bills(folder: Path, after: int = 0, timeout: float = 120.0) -> None:
    """Both concentrators' aggregate of each slot all meters reported equals the sums of the meters' own bills (and
    at least one slot after ``after`` is there); no report was refused."""
    deadline = time.monotonic() + timeout
    for node in ("DC1", "DC1-backup"):
        while True:
            view = node_bills(folder, node)
            full = [r for r in view["slots"] if r["meters"] == len(HOMES)]
            if any(r["slot"] > after for r in full):
                break
            assert time.monotonic() < deadline, (node, view)
            time.sleep(1)
        reported = bills(folder)  # written before they are reported: every slot the node has is in them
        for row in full:
            mine = [reported[m][row["slot"]] for m, _ in HOMES]
            assert row["energy_ws"] == sum(b["energy_ws"] for b in mine), (node, row, mine)
            assert row["amount"] == sum(b["amount"] for b in mine), (node, row, mine)
            assert row["audit_failed"] == sum(not b["eca_audit_ok"] for b in mine)
        assert view["refused"] == {}, view


def node_bills(folder: Path, node: str) -> dict:
    with operator_client(folder, node) as c:
        return c.bills(last=10_000)


def test_the_bid_store_sees_only_exit_relays(community):
    wait_rounds(community, 1)
    relays = {relay_name(m) for m, _ in HOMES}
    senders = set(status(community)["senders"])
    assert senders and senders <= relays
    log = (community / "market-bidstore.log").read_text()
    logged = {line.split(" request from ")[1].split()[0] for line in log.splitlines() if " request from " in line}
    assert logged and logged <= relays
    assert not any(f"prosumer-{m}" in log for m, _ in HOMES)


async def probe(folder: Path, requests: list[bytes], service: str | None = None) -> list[dict]:
    """Send raw requests to the active bid store over one onion circuit from the plan's probe address."""
    plan = MarketPlan.load(folder)
    service = service or plan.store(status(folder)["active"]).store
    return [json.loads(a) for a in await probe_raw(folder, [(service, r) for r in requests])]


async def probe_raw(folder: Path, requests: list[tuple[str, bytes]]) -> list[bytes]:
    """Send raw requests, each to its onion service, over one circuit per service from the plan's probe address
    (through the relays that are up, as a prosumer builds its circuits). One session per test: a relay's connection
    to the probe address of an earlier session is stale, and the first cells it sends there are lost (so retries)."""
    plan = MarketPlan.load(folder)
    with operator_client(folder) as dc1:
        replica = Replica(plan.genesis, dc1)
        replica.sync()
    relays = await live_relays(plan.descriptors, plan.book)
    directory = RelayDirectory(relays, replica.chain.state.policy, replica.slot())
    node = await OnionNode(plan.transport(PROBE), None, directory).start()
    try:
        circuits, answers = {}, []
        for service, r in requests:
            if service not in circuits:
                circuits[service] = await open_circuit(node, service, attempts=8, timeout=10)
            answers.append(await circuits[service].request(r, 10))
        return answers
    finally:
        await node.close()


def test_a_malformed_request_gets_its_code_and_the_store_keeps_serving(community):
    last = max([r["slot"] for r in status(community)["rounds"]], default=0)
    answers = asyncio.run(
        probe(
            community,
            [b"{not json", json.dumps({"op": "post", "order": {"side": "sell"}}).encode(), b'{"op": "challenge"}'],
        )
    )
    assert answers[0]["error"] == "bid-bad-request"
    assert answers[1]["error"] in ("bid-bad-order", "bid-bad-request")
    assert len(bytes.fromhex(answers[2]["challenge"])) > 0
    wait_rounds(community, 1, after=last)  # the market goes on
    assert status(community)["refused"].get("bid-bad-request", 0) >= 1
    assert "bid store refused a request from relay-" in (community / "market-bidstore.log").read_text()


def test_killing_a_relay_does_not_stop_the_market(community):
    state = json.loads((community / cluster.STATE_FILE).read_text())
    victim = next(m for m in state["market"] if m["id"] == relay_name("MI004"))
    os.killpg(victim["pid"], signal.SIGTERM)
    killed_at = max(r["slot"] for r in status(community)["rounds"])
    after = wait_rounds(community, 1, after=killed_at + 1)  # a round that started after the relay was gone
    assert after[0]["orders"] >= 2 and after[0]["matched_w"] > 0
    log = (community / "market-bidstore.log").read_text().split("round for slot")[-2]
    assert relay_name("MI004") not in log


def test_a_prosumer_killed_mid_round_restarts_with_its_coins_nonce_and_bills(community):
    """kill -9 a buyer's prosumer process while a round runs and start it again: it takes its keys from its journals
    and its meter's issues and nonce from the chain (no issue refused as a replay), every slot is billed once with
    its ECA audit holding (what it held when it died was deposited back), and a full round settles again."""
    meter, name = "MI002", prosumer_name("MI002")
    last = max(r["slot"] for r in settled(community))
    wait_rounds(community, 1, after=last)
    time.sleep(SLOT_S * 0.45)  # into the next round: its issue is out, its mix or order under way
    state = json.loads((community / cluster.STATE_FILE).read_text())
    entry = next(m for m in state["market"] if m["id"] == name)
    os.killpg(entry["pid"], signal.SIGKILL)
    killed_at = max(r["slot"] for r in status(community)["rounds"])
    entry["pid"] = _start(community, "prosumer", meter, name).pid  # `cluster down` stops the new one
    (community / cluster.STATE_FILE).write_text(json.dumps(state, indent=2))
    billed = assert_a_full_round_billed(community, after=killed_at + 1, timeout=240)
    mine = json.loads(bills_path(community, meter).read_text())
    slots = [b["slot"] for b in mine["bills"]]
    assert slots == list(range(mine["from_slot"], slots[-1] + 1)) and slots[-1] >= billed["slot"], slots
    assert all(b["eca_audit_ok"] for b in mine["bills"]), mine
    log = (community / f"market-{name}.log").read_text()
    assert "bad-issue-nonce" not in log and log.count(f"prosumer {meter} trading") == 2
    assert_the_concentrators_sum_the_bills(community, after=killed_at + 1)


def test_the_standby_refuses_orders_and_joins_while_the_primary_is_active(community):
    """The standby's book answers that it is not active and refuses a challenge (so an order) with bid-not-active;
    its mix board refuses a join with mix-not-active; the primary says it is active."""
    from gridledger.ledger.encoding import Reader
    from gridledger.petra.coinshuffle import B_ERROR, P_JOIN

    assert status(community)["active"] == BIDSTORE_ID
    plan = MarketPlan.load(community)
    primary, standby = plan.store(BIDSTORE_ID), plan.store(STANDBY_ID)
    active, challenge = b'{"op": "active"}', b'{"op": "challenge"}'
    asked = [(primary.store, active), (standby.store, active), (standby.store, challenge)]
    *answers, joined = asyncio.run(probe_raw(community, [*asked, (standby.board, bytes([P_JOIN]) + bytes(40))]))
    assert [json.loads(a) for a in answers[:2]] == [{"active": True}, {"active": False}]
    assert json.loads(answers[2])["error"] == "bid-not-active"
    assert joined[0] == B_ERROR and Reader(joined[1:]).name("code") == "mix-not-active"


def test_the_standby_bid_store_takes_over_when_the_active_one_is_killed(community):
    """kill -9 the active bid store once a round committed its trades: the standby takes the market lease within a
    few seconds (measured and printed), says so in market-status.json, and a later round it clears commits its
    trades and deposits; the round the dead store held is lost, its coins deposited back: every meter's bills of
    the slots since balance (ECA audit) and both concentrators still hold their sums."""
    before = status(community)
    assert before["active"] == BIDSTORE_ID and before["stores"] == [BIDSTORE_ID, STANDBY_ID]
    last = max(r["slot"] for r in settled(community))
    done = wait_rounds(community, 1, after=last)  # a round committed its trades just now
    state = json.loads((community / cluster.STATE_FILE).read_text())
    victim = next(m for m in state["market"] if m["id"] == BIDSTORE_ID)
    killed_at = max(r["slot"] for r in status(community)["rounds"])
    killed = time.time()
    os.killpg(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (now := status(community)).get("active") != STANDBY_ID:
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    takeover = now["takeovers"][-1]
    assert takeover["store"] == STANDBY_ID and takeover["slot"] >= killed_at - 1
    print(f"the standby took over {takeover['at'] - killed:.2f} s after the kill")
    # the rounds the dead store recorded are carried on: what it settled is still listed
    assert {t for r in done for t in r["trades"]} <= {t for r in now["rounds"] for t in r["trades"]}
    after = wait_rounds(community, 1, after=killed_at + 1, timeout=240)
    assert after[0]["store"] == STANDBY_ID and after[0]["matched_w"] > 0
    with operator_client(community) as dc1:
        for txid in after[0]["trades"] + after[0]["deposits"]:
            assert dc1.tx_status(bytes.fromhex(txid))["status"] == "committed"
    log = (community / f"market-{STANDBY_ID}.log").read_text()
    assert f"bid store {STANDBY_ID} is now the active one" in log
    billed = assert_a_full_round_billed(community, after=killed_at + 1)
    reported = bills(community)
    for m, mine in reported.items():  # the lost round's coins came back: nothing issued is missing from a bill
        assert all(mine[t]["eca_audit_ok"] for t in range(killed_at, billed["slot"] + 1)), (m, mine)
    assert_the_concentrators_sum_the_bills(community, after=killed_at + 1)
    shown = CliRunner().invoke(cluster_app, ["status", "--dir", str(community)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "market rounds (bid store)" in shown.output
    assert f"active bid store: {STANDBY_ID} (since slot {takeover['slot']}; standby: {BIDSTORE_ID})" in shown.output


def test_the_market_fails_over_to_the_backup_concentrator_when_the_primary_dies(community):
    """Kill DC1: the bid store moves to DC1-backup (which leads the chain once DC1's term lapsed), and the rounds
    after the fail-over commit their trades and deposits there."""
    state = json.loads((community / cluster.STATE_FILE).read_text())
    dc1 = next(n for n in state["nodes"] if n["id"] == "DC1")
    backup = next(n for n in state["nodes"] if n["id"] == "DC1-backup")
    killed_at = max(r["slot"] for r in status(community)["rounds"])
    os.killpg(dc1["pid"], signal.SIGKILL)
    after = wait_rounds(community, 1, after=killed_at + 1, timeout=240)
    assert after[0]["matched_w"] > 0
    with operator_client(community, "DC1-backup") as node:
        assert node.status()["leading"]
        for txid in after[0]["trades"] + after[0]["deposits"]:
            assert node.tx_status(bytes.fromhex(txid))["status"] == "committed"
    store_log = (community / f"market-{status(community)['active']}.log").read_text()
    assert f"submitting to {backup['url']} from now on" in store_log


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[community]\nname = 1\n", "community"),
        (
            COMMUNITY.split("[[homes]]")[0] + '[[homes]]\nid = "MI001"\nfeeder = "F1"\nannual_kwh = 2500.0\n',
            "at least 4",
        ),
    ],
)
def test_a_bad_community_file_is_one_line_and_starts_nothing(tmp_path, toml, message):
    (tmp_path / "c.toml").write_text(toml)
    result = CliRunner().invoke(
        cluster_app, ["up", "--community", str(tmp_path / "c.toml"), "--dir", str(tmp_path / "net")]
    )
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "net" / cluster.STATE_FILE).exists()


def test_homes_with_pv_sell_and_a_unit_worth_nothing_is_refused(tmp_path):
    import tomllib

    from gridledger.node.market import MarketPlanError
    from gridledger.node.market_up import sides
    from gridledger.profiles.community import parse_community

    homes = parse_community(tomllib.loads(COMMUNITY)).homes
    assert sides(homes) == {"MI001": "offer", "MI002": "bid", "MI003": "offer", "MI004": "bid"}
    no_pv = [h.__class__(h.id, h.feeder, h.annual_kwh) for h in homes]
    assert list(sides(no_pv).values()) == ["offer", "bid", "offer", "bid"]
    plan = MarketPlan(tmp_path, b"", [], None, 100, 120, 1.0, {}, [], {}, {})
    with pytest.raises(MarketPlanError, match="worth nothing"):
        plan.denominations(1, 15)
    assert plan.denominations(1, 300)[AssetKind.FA].amount == 1  # 100 W for 300 s at 120/kWh


def test_an_enrolment_that_went_stale_before_the_nodes_committed_it_is_replaced(tmp_path):
    from gridledger.node.market_up import await_enrolment

    requires.etcd()
    folder = tmp_path / "net"
    # enrolled from slot 0 of 5 s slots that started a minute ago: stale before any node runs
    state = cluster.up(
        folder, 2, 1, poef=True, insecure=True, slot_seconds=5, limits=(1000, 1000, 10), enrol_after_s=-60
    )
    try:
        await_enrolment(folder, state, (1000, 1000, 10), 0, 60)
        with operator_client(folder) as dc1:
            view = dc1.policy()
        (policy,) = view["policies"]
        assert policy["effective_slot"] > 12 and policy["height"] is not None
        assert [m["meter"] for m in policy["authorize"]] == ["MI1", "MI2"]
        assert policy["limits"][0]["max_epa_w"] == 1000
    finally:
        cluster.down(folder)


def test_the_market_lease_goes_to_the_primary_and_to_the_standby_only_once_the_primary_stops_renewing(etcd_cluster):
    """On real etcd: the primary store wins the first lease (the standby waits even for an absent key); while the
    primary renews, the standby never takes it; once the primary stops (as killed), the standby takes it, not
    before ``TAKEOVER_S``; a primary started again does not take it back while the standby renews."""
    chain_id = os.urandom(32)

    def lease(store: str) -> StoreLease:
        return StoreLease(etcd_cluster.endpoints, chain_id, store, preferred=store == BIDSTORE_ID)

    primary, standby = lease(BIDSTORE_ID), lease(STANDBY_ID)
    try:
        assert not standby.contend()
        assert primary.contend()
        end = time.monotonic() + TAKEOVER_S + 2
        while time.monotonic() < end:
            primary.contend()
            assert not standby.contend()
            time.sleep(LEASE_POLL_S)
        assert standby.leader() == BIDSTORE_ID
        primary.close()  # no more renewals
        stopped = time.monotonic()
        while not standby.contend():
            assert time.monotonic() < stopped + 60
            time.sleep(LEASE_POLL_S)
        print(f"the standby's lease {time.monotonic() - stopped:.2f} s after the primary's last look")
        assert time.monotonic() - stopped >= TAKEOVER_S and standby.leader() == STANDBY_ID
        again = lease(BIDSTORE_ID)
        end = time.monotonic() + TAKEOVER_S + 2
        while time.monotonic() < end:
            standby.contend()
            assert not again.contend()
            time.sleep(LEASE_POLL_S)
        again.close()
    finally:
        standby.close()
        primary.close()
