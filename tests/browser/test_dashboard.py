"""The dashboard (``/dashboard``) and Swagger UI (``/docs``) of a node of a real PoEf cluster, open in headless
Chromium over the DevTools protocol while the chain grows: the page loads from the node alone, its height rises
live, the committees show who certified, and an implausible reading's alarm appears. The screenshot is kept.

The bills' section is opened on a node of its own whose chain started long ago (in the cluster no slot ends for the
first 14 minutes, and a live market takes minutes to bill: ``tests/node/test_market_net.py`` runs one): its meters
report bills through the API (``POST /v1/bills``, signed as each meter), as the market's meters do. The market's
section is opened on a node over a chain where known extractions, trades and deposits were committed by the real
PETra roles (``tests/node/test_dashboard_market.py``); a deposit committed while the page is open appears live."""

from __future__ import annotations

import json
import os
import signal

import pytest

from gridledger.client import ApiError, NodeClient, load_key
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.reading import ReadingValues
from gridledger.node import cluster
from gridledger.node.run import build_service
from gridledger.node.testnet import serve
from tests import requires
from tests.node.test_bills import client, config, ended
from tests.node.test_dashboard_market import DSO_SECRET, deposit, market_node

from .cdp import Page
from .chromium import CHROMIUM
from .png import png_stats

pytestmark = pytest.mark.slow
METERS = ("MI1", "MI2", "MI3")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    requires.etcd()
    folder = tmp_path_factory.mktemp("dashboard-cluster")
    state = cluster.up(folder, meters=len(METERS), concentrators=1, poef=True, insecure=True)  # Chromium: http
    try:
        urls = {n["id"]: n["url"] for n in state["nodes"]}
        with NodeClient(urls["DC1"], "operator", load_key(folder / "keys" / "operator.seed"), timeout=5) as dc1:
            dc1.wait(bytes.fromhex(dc1.policy()["policies"][0]["txid"]))  # the enrolment block
            yield folder, urls, dc1
    finally:
        cluster.down(folder)


@pytest.fixture(scope="module")
def devices(net) -> dict:
    """The meters' reading devices, shared by the tests of the cluster (each keeps its last minute)."""
    return {m: cluster.meter_device(net[0], m) for m in METERS}


def text(page: Page, element: str) -> str:
    return page.eval(f"document.getElementById('{element}').textContent")


def keep_screenshot_and_check(page: Page, tmp_path_factory, name: str, origin: str) -> bytes:
    """Keep the page's screenshot as a test artifact (its path printed), check that the page loaded everything from
    ``origin`` (no CDN) and raised no JavaScript error; the PNG's bytes."""
    shot = page.screenshot()
    path = tmp_path_factory.mktemp("artifacts") / name
    path.write_bytes(shot)
    print(f"dashboard screenshot: {path}")
    assert page.requests and all(u.startswith(origin + "/") for u in page.requests), page.requests
    assert not page.errors, page.errors
    return shot


def test_the_dashboard_shows_the_chain_growing_live_with_its_committees_and_alarms(net, devices, tmp_path_factory):
    folder, urls, dc1 = net

    def read(wh: dict[str, int]) -> int:
        """Each meter's next minute, submitted to DC1; the height that committed them all."""
        txids = [dc1.send(d.reading(d.last_minute + 1, ReadingValues(wh.get(m, 10)))) for m, d in devices.items()]
        return max(dc1.wait(t)["height"] for t in txids)

    page = Page(urls["DC1"] + "/dashboard", tmp_path_factory.mktemp("chromium"))
    try:
        first = int(page.wait("document.getElementById('height').textContent.match(/^\\d+$/)", what="a height")[0])
        page.eval("window.openedOnce = true")  # gone if the page were reloaded
        for _ in range(3):
            top = read({})
        page.wait(f"Number(document.getElementById('height').textContent) >= {top}", what=f"height {top} on the page")
        assert top > first and page.eval("window.openedOnce === true")
        plotted = page.eval("document.getElementById('plot-height').data[0].y")  # the page's own history
        assert plotted[0] == first and max(plotted) >= top, plotted
        spike = read({"MI2": 600})
        page.wait(
            "[...document.querySelectorAll('#alarms tbody tr')]"
            ".some(r => r.textContent.includes('implausible_reading'))",
            what="the implausible reading's alarm",
        )
        page.wait(f"Number(document.getElementById('height').textContent) >= {spike}", what=f"height {spike}")
        rows = page.eval("[...document.querySelectorAll('#committees tbody tr')].map(r => r.textContent)")
        assert any("coordinator" in r and "MI" in r for r in rows), rows  # proposer and certificate signers
        assert float(text(page, "rate")) > 0
        assert text(page, "latency").count("/") == 2 and "–" not in text(page, "latency")
        assert page.eval("document.querySelectorAll('#plot-height .main-svg').length") >= 1
        stats = png_stats(keep_screenshot_and_check(page, tmp_path_factory, "dashboard.png", urls["DC1"]))
        assert stats.width >= 1000 and stats.varying > 0.01, stats
    finally:
        page.close()


def test_swagger_ui_renders_offline_from_the_nodes_own_assets(net, tmp_path_factory):
    _, urls, _ = net
    page = Page(urls["DC1"] + "/docs", tmp_path_factory.mktemp("chromium-docs"))
    try:
        title = page.wait("document.querySelector('.swagger-ui .info .title')?.textContent", what="Swagger UI")
        assert "gridledger node DC1" in title
        ops = page.wait(
            "document.querySelectorAll('.opblock').length >= 10 && document.querySelectorAll('.opblock').length"
        )
        assert ops >= 10
        assert page.eval("!!document.querySelector('.swagger-ui .auth-wrapper .authorize')")  # the signing headers
        assert all(u.startswith(urls["DC1"] + "/") for u in page.requests), page.requests
        assert not page.errors, page.errors
    finally:
        page.close()


def test_the_dashboard_shows_the_bills_the_meters_reported(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    svc = build_service(config(tmp_path_factory.mktemp("bills-node")))
    svc.start()
    t = ended()
    try:
        with serve(svc.app) as url:
            page = Page(url + "/dashboard", tmp_path_factory.mktemp("chromium-bills"))
            try:
                page.wait("document.getElementById('bills-total').textContent.includes('0 slots')", what="no bills")
                assert page.eval("document.getElementById('no-bills').style.display") == ""
                with client(url, "MI1") as mi1, client(url, "MI2") as mi2:
                    mi1.report_bill(t, 36_000, 7, True)  # 10 Wh settled, 7 minor units
                    mi2.report_bill(t, -7_200, -2, False)  # 2 Wh exported, paid 2; its ECA audit failed
                    mi1.report_bill(t - 1, 3_600, 1, True)
                    with pytest.raises(ApiError):
                        mi1.report_bill(t - 1, 0, 0, True)  # another bill for a billed slot: refused, counted
                total = page.wait(
                    "document.getElementById('bills-total').textContent.includes('2 slots') &&"
                    " document.getElementById('bills-total').textContent",
                    what="the bills' total",
                )
                assert total.startswith("6 minor units billed · 9.0 Wh settled · 2 slots, 3 reports"), total
                assert "ECA audit failed: 1" in total and "bill-conflict 1" in total, total
                rows = rows_of(page, "bills")
                assert rows == [[str(t), "2", "8.0", "5", "1 failed"], [str(t - 1), "1", "1.0", "1", "ok"]], rows
                assert page.eval("document.querySelector('#bills tbody tr').className") == "alarm"
                assert page.eval("document.getElementById('no-bills').style.display") == "none"
                keep_screenshot_and_check(page, tmp_path_factory, "dashboard-bills.png", url)
            finally:
                page.close()
    finally:
        svc.stop()


def rows_of(page: Page, table: str) -> list[list[str]]:
    """The cells' text of each row of ``table``'s body."""
    cells = "r => [...r.cells].map(c => c.textContent)"
    return page.eval(f"[...document.querySelectorAll('#{table} tbody tr')].map({cells})")


def test_the_dashboard_shows_the_market_rounds_on_the_chain(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    svc, net = market_node(tmp_path_factory.mktemp("market-node"))
    svc.start()
    try:
        with serve(svc.app) as url:
            page = Page(url + "/dashboard", tmp_path_factory.mktemp("chromium-market"))
            try:
                page.wait("document.querySelectorAll('#market tbody tr').length === 4", what="4 slots of market")
                assert rows_of(page, "market") == [  # newest first
                    ["3", "0", "0.0 / 0.0", "0", "0", "0.0", "1"],
                    ["2", "0", "0.0 / 0.0", "0", "1", "350.0", "0"],
                    ["1", "0", "0.0 / 0.0", "0", "1", "400.0", "0"],
                    ["0", "2", "2000.0 / 2000.0", "0", "0", "0.0", "0"],
                ]
                assert text(page, "market-total") == (
                    "2 extractions (EPA 2000.0 Wh, ECA 2000.0 Wh) · 0 mixes · 2 trades, 750.0 Wh traded"
                    " · 1 deposits · 4 slots"
                )
                assert page.eval("document.getElementById('no-market').style.display") == "none"
                traded = page.eval("document.getElementById('plot-market').data[1]")
                assert traded["name"] == "traded" and traded["y"] == [0, 400, 350, 0], traded
                with NodeClient(url, "operator", KeyPair.from_secret(DSO_SECRET)) as dso:
                    dso.wait(dso.send(deposit(net, "buyer", "MI2")))
                page.wait("document.querySelectorAll('#market tbody tr').length === 5", what="the new deposit's slot")
                assert rows_of(page, "market")[0][1:] == ["0", "0.0 / 0.0", "0", "0", "0.0", "1"]
                assert "2 deposits · 5 slots" in text(page, "market-total")
                keep_screenshot_and_check(page, tmp_path_factory, "dashboard-market.png", url)
            finally:
                page.close()
    finally:
        svc.stop()


def test_the_dashboard_names_the_silent_members_a_stalled_height_waits_for(net, devices, tmp_path_factory):
    """Two of the three meters' nodes hang (SIGSTOP): the leader's page shows a banner with the height, its one vote
    of the two needed and the silent MI2 and MI3; once they resume the height commits and the banner goes."""
    folder, urls, dc1 = net
    nodes = {n["id"]: n for n in json.loads((folder / cluster.STATE_FILE).read_text())["nodes"]}
    operator = load_key(folder / "keys" / "operator.seed")
    leader = next(i for i in ("DC1", "DC1-backup") if NodeClient(urls[i], "operator", operator).status()["leading"])
    device = devices["MI1"]
    page = Page(urls[leader] + "/dashboard", tmp_path_factory.mktemp("chromium-stall"))
    stopped = [nodes[m]["pid"] for m in ("MI2", "MI3")]
    try:
        page.wait("document.getElementById('height').textContent.match(/^\\d+$/)", what="a height")
        assert page.eval("document.getElementById('quorum-wait').style.display") == "none"
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        txid = dc1.send(device.reading(device.last_minute + 1, ReadingValues(10)))
        banner = page.wait(
            "document.getElementById('quorum-wait').style.display === '' &&"
            " document.getElementById('quorum-wait').textContent",
            what="the stalled height's banner",
        )
        assert "has no quorum for" in banner and "1 of 2 votes" in banner, banner
        assert banner.endswith("silent committee members: MI2, MI3"), banner
        keep_screenshot_and_check(page, tmp_path_factory, "dashboard-stalled.png", urls[leader])
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped = []
        assert dc1.wait(txid)["status"] == "committed"
        page.wait("document.getElementById('quorum-wait').style.display === 'none'", what="the banner gone")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        page.close()
