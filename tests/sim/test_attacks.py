"""Attacks in a community run (``--attack KIND@TARGET[:FROM-TO]``): bad specs are refused before anything is written;
each kind's effect is real in the run's outputs and chains, and its detection comes from a mechanism of the run."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gridledger.chain import verify_store
from gridledger.cli import app
from gridledger.ledger.billing import energy_charge
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.anchor import Anchor
from gridledger.ledger.kinds.reading import Reading, open_reading
from gridledger.ledger.members import roster
from gridledger.profiles.community import generate_community
from gridledger.sim.attacks import BALANCE_FLOOR_WH, BALANCE_PCT, FLOOD_TXS, SENSOR_W, AttackError, parse_attacks
from gridledger.sim.network import content_keys
from gridledger.sim.run import RunError, run_community
from gridledger.store.sqlite import SqliteStore

runner = CliRunner()
COMMUNITY = generate_community(6, 1, 3, feeders=1)  # MI001..MI006 on F1; MI003 and MI005 have no PV or battery
SLOT_S = COMMUNITY.slot_seconds
PRICE = COMMUNITY.prices.consumption_per_kwh


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run per attack spec, made on first use."""
    done: dict[str, tuple[Path, dict]] = {}

    def get(spec: str) -> tuple[Path, dict]:
        if spec not in done:
            out = tmp_path_factory.mktemp("attack") / "run"
            summary = run_community(COMMUNITY, out, attacks=[spec])
            done[spec] = out, summary
        return done[spec]

    return get


def table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / f"{name}.parquet")


def only_attack(summary: dict, out: Path) -> dict:
    (entry,) = summary["attacks"]
    row = table(out, "attacks").iloc[0]
    assert (row.kind, row.target, bool(row.detected), row.mechanism) == (
        entry["kind"],
        entry["target"],
        entry["detected"],
        entry["mechanism"],
    )
    assert json.loads((out / "summary.json").read_text())["attacks"] == summary["attacks"]
    return entry


def verify(out: Path):
    return runner.invoke(app, ["verify", str(out)])


def nan_blocks(out: Path, which: int = 0) -> tuple[list[Block], object]:
    (chain,) = [c for c in json.loads((out / "chains" / "tiers.json").read_text())["chains"] if c["tier"] == "nan"]
    store = SqliteStore(out / "chains" / chain["stores"][which])
    try:
        return [Block.decode(raw) for _, raw in store.iter_blocks(0)], verify_store(store)
    finally:
        store.close()


def chain_readings(out: Path) -> dict[tuple[str, int], int]:
    """Consumption (Wh) of every meter-slot as the NAN chain holds it, opened with the DSO's content keys."""
    blocks, state = nan_blocks(out)
    ids, keys = roster(state).ids, content_keys().chain(state.chain_id)
    return {
        (ids[tx.member], tx.minute * 60 // SLOT_S): open_reading(state.chain_id, tx, keys.key_of(tx)).consumption_wh
        for b in blocks
        for tx in b.transactions
        if isinstance(tx, Reading)
    }


# ------------------------------------------------------------------ bad specs
@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["theft-h1"], "expected KIND@TARGET"),
        (["theft-h9@MI001"], "unknown kind 'theft-h9'"),
        (["theft-h1@MI999"], "'MI999' is not one of this community's"),
        (["flood@MI001"], "flood targets a feeder"),
        (["spoof@F1"], "spoof targets a home"),
        (["theft-h1@MI001:10-5"], "window 10-5 is empty"),
        (["theft-h1@MI001:0-97"], "ends after the run's last slot"),
        (["theft-h1@MI001:8:00-9:00"], "FROM and TO must be slot numbers"),
        (["theft-h1@MI001:a-4"], "FROM and TO must be slot numbers"),
        (["tamper@F1:0-10"], "FROM must be at least 1"),
        (["flood@F1:0-4", "flood@F1:10-14"], "a second flood on F1"),
        (["theft-h1@MI003", "sensor@MI003"], "MI003 carries another theft or sensor attack"),
    ],
)
def test_a_bad_attack_spec_gets_its_own_error(specs, message):
    with pytest.raises(AttackError) as e:
        parse_attacks(specs, COMMUNITY)
    assert str(e.value).startswith("--attack") and message in str(e.value)


def test_a_bad_attack_writes_nothing(tmp_path):
    with pytest.raises(RunError, match="unknown kind"):
        run_community(COMMUNITY, tmp_path / "lib", attacks=["ddos@F1"])
    assert not (tmp_path / "lib").exists()
    r = runner.invoke(
        app, ["simulate", "--homes", "6", "--days", "1", "--out", str(tmp_path / "cli"), "--attack", "theft-h1@XX"]
    )
    assert r.exit_code == 2
    assert "--attack 'theft-h1@XX'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "cli").exists()


def test_the_command_runs_several_attacks_and_reports_each(tmp_path):
    out = tmp_path / "run"
    args = ["simulate", "--homes", "6", "--days", "1", "--seed", "3", "--out", str(out), "--no-report"]
    r = runner.invoke(app, [*args, "--attack", "spoof@MI002:10-12", "--attack", "theft-h3@MI005:40-60"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert [(a["kind"], a["target"]) for a in summary["attacks"]] == [("spoof", "MI002"), ("theft-h3", "MI005")]
    assert list(table(out, "attacks").kind) == ["spoof", "theft-h3"]
    assert "attack spoof@MI002: detected" in " ".join(r.output.split())
    assert verify(out).exit_code == 0


def test_a_parsed_window():
    (a,) = parse_attacks(["theft-h2@MI003:32-48"], COMMUNITY)
    assert (a.kind, a.target, a.from_slot, a.to_slot) == ("theft-h2", "MI003", 32, 48)
    (whole,) = parse_attacks(["fake-price@F1"], COMMUNITY)
    assert (whole.from_slot, whole.to_slot) == (0, 96)


# ------------------------------------------------------------------ energy theft
THEFTS = [f"theft-h{k}@{'MI003' if k % 2 else 'MI005'}:{8 * k}-{8 * k + 40}" for k in range(1, 7)]


@pytest.mark.parametrize("spec", THEFTS)
def test_theft_lowers_the_thiefs_readings_and_the_feeder_balance_catches_it(runs, spec):
    out, summary = runs(spec)
    a = only_attack(summary, out)
    thief, start, end = a["target"], a["from_slot"], a["to_slot"]
    house = table(out, "households").set_index(["meter", "slot"]).net_wh  # the homes' true consumption (no PV)
    read = table(out, "readings").set_index(["meter", "slot"]).consumption_wh
    on_chain = chain_readings(out)
    window = range(start, end)
    assert all(on_chain[(thief, s)] == read[(thief, s)] for s in range(96))  # the chain holds what the meter said
    assert all(read[(thief, s)] == house[(thief, s)] for s in range(96) if s not in window)
    assert [read[(thief, s)] for s in window] != [house[(thief, s)] for s in window]
    if a["kind"] in ("theft-h1", "theft-h2", "theft-h3", "theft-h4"):  # these under-report the energy
        assert sum(read[(thief, s)] for s in window) < sum(house[(thief, s)] for s in window)
    honest = [m for m in ("MI003", "MI005") if m != thief]
    assert all(read[(m, s)] == house[(m, s)] for m in honest for s in range(96))
    # the concentrator's feeder meter still measures the true total: the feeder does not balance
    feeder = table(out, "dso_feeder_slots").set_index("slot").import_wh
    readings_total = table(out, "readings").groupby("slot").consumption_wh.sum()
    gap = (feeder - readings_total).abs()
    flagged = [s for s in window if gap[s] > max(BALANCE_FLOOR_WH, feeder[s] * BALANCE_PCT // 100)]
    assert all(gap[s] == 0 for s in range(96) if s not in window)
    assert a["detected"] == bool(a["mechanisms"])
    if flagged:
        assert a["detected"]
        assert a["mechanisms"]["feeder-balance"] == (flagged[0] + 1 - start) * SLOT_S
        assert a["detection_delay_s"] <= a["mechanisms"]["feeder-balance"]
    # the cost: the stolen energy at the tariff (flat here)
    stolen = sum(
        energy_charge(int(house[(thief, s)]) * 3600, (PRICE, 0))
        - energy_charge(int(read[(thief, s)]) * 3600, (PRICE, 0))
        for s in window
    )
    assert a["victim_cost_minor"] == stolen
    if a["kind"] == "theft-h1":
        assert stolen > 0
    bills = table(out, "bills").set_index(["meter", "slot"]).measured_ws
    assert all(bills[(thief, s)] == read[(thief, s)] * 3600 for s in window)  # billed on what it reported
    assert verify(out).exit_code == 0


def test_theft_is_detected_by_the_balance_on_every_model(runs):
    """Each of h1..h6 moves or removes enough of a home's energy for the concentrator's balance to see it."""
    assert all(only_attack(runs(s)[1], runs(s)[0])["detected"] for s in THEFTS)


def test_the_theft_detector_reads_the_meters_export_register(tmp_path, monkeypatch):
    """A PV home's slots with export are not its base load: the twin's detector gets the export register."""
    from gridledger.analytics.theft import TheftModel

    given, logits = [], TheftModel.logits

    def spy(model, days, export=None):
        if inspect.stack()[1].function == "_theft_detector":
            given.append(export)
        return logits(model, days, export)

    monkeypatch.setattr(TheftModel, "logits", spy)
    out = tmp_path / "run"
    run_community(COMMUNITY, out, attacks=["theft-h1@MI003"])
    (export,) = given
    read = table(out, "readings")
    assert export is not None and export.shape[0] == read.meter.nunique()
    assert export.sum() == read.production_wh.sum() > 0


def test_a_faulty_sensor_raises_a_plausibility_alarm_and_overbills_the_household(runs):
    out, summary = runs("sensor@MI003:40-48")
    a = only_attack(summary, out)
    house = table(out, "households").set_index(["meter", "slot"]).net_wh
    read = table(out, "readings").set_index(["meter", "slot"]).consumption_wh
    extra = SENSOR_W * SLOT_S // 3600
    assert all(read[("MI003", s)] == house[("MI003", s)] + extra for s in range(40, 48))
    assert a["detected"] and "plausibility:robust-window" in a["mechanisms"]
    alarms = table(out, "alarms")
    assert (alarms.code == int(AlarmCode.IMPLAUSIBLE_READING)).any() and alarms.slot.between(41, 49).any()
    assert a["victim_cost_minor"] == 8 * energy_charge(extra * 3600, (PRICE, 0))
    assert verify(out).exit_code == 0


# ------------------------------------------------------------------ transactions refused by the rules
def test_a_spoofed_reading_is_rejected_and_the_meters_own_readings_commit(runs):
    out, summary = runs("spoof@MI002:10-20")
    a = only_attack(summary, out)
    assert a["detected"] and a["mechanism"] == "bad-reading-signature"
    assert a["details"]["rejected"] == {"bad-reading-signature": 10} and "accepted" not in a["details"]
    assert 0 < a["detection_delay_s"] < 2 * SLOT_S and a["victim_cost_minor"] == 0
    on_chain = chain_readings(out)
    read = table(out, "readings").set_index(["meter", "slot"]).consumption_wh
    assert all(on_chain[("MI002", s)] == read[("MI002", s)] for s in range(96))
    assert verify(out).exit_code == 0


def test_a_fake_price_never_reaches_the_chain(runs):
    out, summary = runs("fake-price@F1:30-34")
    a = only_attack(summary, out)
    assert a["detected"] and a["mechanism"].startswith("bad-policy-")
    assert a["details"]["submitted"] == 4 and sum(a["details"]["rejected"].values()) == 4
    _, state = nan_blocks(out)
    fake = tuple(a["details"]["fake_prices"])
    assert all(p.prices != fake for p in state.policy.policies) and a["victim_cost_minor"] == 0
    assert verify(out).exit_code == 0


def test_a_flood_is_rejected_and_every_honest_reading_still_commits(runs):
    out, summary = runs("flood@F1:10-14")
    a = only_attack(summary, out)
    d = a["details"]
    assert a["detected"] and a["mechanism"] == "bad-reading-member-unknown"
    assert d["submitted"] == 4 * FLOOD_TXS == d["rejected"]["bad-reading-member-unknown"]
    assert d["honest_readings_committed"] == d["honest_readings_expected"] == 6 * 4
    assert len(chain_readings(out)) == 6 * 96
    assert verify(out).exit_code == 0


# ------------------------------------------------------------------ the stores and the coordinator
@pytest.mark.parametrize("spec", ["tamper@F1:30-60", "tamper@MI004:20-96"])
def test_a_tampered_store_is_found_when_the_node_revalidates_it(runs, spec):
    out, summary = runs(spec)
    a = only_attack(summary, out)
    assert a["detected"] and a["mechanism"].startswith("store-revalidation:bad-")
    # nothing re-reads a store before the node restarts at TO
    assert a["detection_delay_s"] >= (a["to_slot"] - a["from_slot"]) * SLOT_S
    assert "flipped" in a["details"]["change"]
    r = verify(out)
    assert r.exit_code == 1 and "INVALID" in r.output


def test_a_lost_coordinator_is_replaced_by_its_backup(runs):
    out, summary = runs("coordinator-loss@F1:30-60")
    a = only_attack(summary, out)
    assert a["detected"] and a["mechanism"] == "coordinator-down-alarm"
    assert 0 < a["detection_delay_s"] < SLOT_S
    assert a["details"]["blocks_by_backup"] > 0 and a["victim_cost_minor"] == 0
    blocks, _ = nan_blocks(out)
    backup = KeyPair.from_secret("DC-F1.backup").public
    by_backup = [b for b in blocks if b.header.proposer == backup]
    assert len(by_backup) == a["details"]["blocks_by_backup"]
    assert any(isinstance(tx, Alarm) and tx.code == AlarmCode.COORDINATOR_DOWN for tx in by_backup[0].transactions)
    assert len(chain_readings(out)) == 6 * 96  # no reading lost in the hand-over
    fan = json.loads((out / "chains" / "tiers.json").read_text())["chains"][1]
    store = SqliteStore(out / "chains" / fan["stores"][0])
    try:
        anchors = [
            tx for _, raw in store.iter_blocks(1) for tx in Block.decode(raw).transactions if isinstance(tx, Anchor)
        ]
    finally:
        store.close()
    assert any(tx.signer == backup for tx in anchors)  # the backup, enrolled on the FAN/WAN, anchors in charge
    assert summary["trades"] > 0
    r = verify(out)  # every copy, the backup's and the recovered primary's included
    assert r.exit_code == 0, r.output
