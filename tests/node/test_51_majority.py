"""The 51 % scenario in real node processes (``majority.py``): a colluding majority of a NAN committee, with the
NAN coordinator's key, certifies an over-issue; every NAN node refuses it, the FAN's members (the NAN's
concentrators, which replicate the NAN) raise a TAMPERING alarm that the FAN commits, where the DSO reads it, and the
FAN refuses the captured coordinator's anchor of the block."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests import requires

from gridledger.node import cluster

sys.path.insert(0, str(Path(__file__).parent))
import majority  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.etcd]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    requires.etcd()
    folder = tmp_path_factory.mktemp("majority")
    try:
        net = majority.start(folder)
        yield net, majority.attack(net)
    finally:
        if (folder / cluster.STATE_FILE).exists():
            cluster.down(folder)


def test_every_nan_node_refuses_the_certified_rule_breaking_block(outcome):
    _, out = outcome
    for node_id, status in out.nan_status.items():
        assert status["height"] == status["height_before"] == out.bad.height - 1, node_id
        assert "bad-issue-over-limit" in status["last_rejected"], node_id
        assert status["sequencer_alive"], node_id


def test_the_fan_members_replicate_the_nan_and_record_the_refusal(outcome):
    _, out = outcome
    for node_id in ("DC1@fan", "DC1-backup@fan"):
        (child,) = out.fan_status[node_id]["children"]
        assert child["height"] == out.bad.height - 1
        assert [r["height"] for r in child["refused"]] == [out.bad.height]
        assert child["refused"][0]["hash"] == out.bad.hash.hex()
        assert out.fan_status[node_id]["alarms_raised"] == 1


def test_the_dso_reads_a_tampering_alarm_about_the_block_on_the_fan(outcome):
    net, out = outcome
    honest = {net.key(n).public for n in majority.FAN_NODES}  # the FAN's coordinator and members: all replicate
    assert out.alarms and {a.subject for a in out.alarms} == {out.bad.hash}
    assert {a.raiser for a in out.alarms} <= honest and net.key("DC1-backup@fan").public in {
        a.raiser for a in out.alarms
    }
    print(f"\nrefused by every NAN node {out.nan_refused_s:.2f} s, alarm on the FAN {out.fan_alarm_s:.2f} s")


def test_the_fan_refuses_the_captured_coordinators_anchor(outcome):
    _, out = outcome
    assert out.anchor_status["status"] == "rejected", out.anchor_status
    assert out.anchor_status["code"] == "bad-poef-anchor-refused", out.anchor_status
