"""``POST /v1/bills`` and ``GET /v1/bills`` on a node built as ``gridledger node run`` builds it (``build_service`` from
a configuration, its API served by uvicorn on loopback), called through ``gridledger.client``: every bad report gets
its own code and leaves nothing stored, a repeated report is idempotent, and the bills survive a restart, on a node
whose store is SQLite and on one whose store is a real PostgreSQL server (started here, on loopback), where a lost
database connection is one refused report (503, the meter retries), not a broken node."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
import uuid

import httpx
import psycopg
import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.chain import Chain
from gridledger.cli import app
from gridledger.client import ApiError, NodeClient
from gridledger.ledger.assets import MAX_AMOUNT
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.bills import BillOutbox, BillReport
from gridledger.node.config import NodeConfig
from gridledger.node.netutil import free_port
from gridledger.node.run import build_service
from gridledger.node.testnet import serve
from gridledger.store.pgserver import PgServer
from gridledger.store.sqlite import SqliteStore

START, SLOT = 1_767_225_600, 900
C1, DSO_KEY = KeyPair.from_secret("bills-coordinator"), KeyPair.from_secret("bills-dso")
KEYS = {"MI1": KeyPair.from_secret("bills-MI1"), "MI2": KeyPair.from_secret("bills-MI2")}
STRANGER = KeyPair.from_secret("bills-MI9")  # a meter this node does not know


def config(folder) -> NodeConfig:
    """DC1 of its own chain (SQLite store in ``folder``) that knows meters MI1, MI2 and the DSO as ``operator``."""
    genesis = Genesis("nan-bills", SLOT, START, DSO_KEY.public, (C1.public,))
    block = Chain.create(SqliteStore(":memory:"), genesis, C1, START).genesis_block.encode()
    registry = [("operator", "dso", DSO_KEY.public)] + [(m, "meter", k.public) for m, k in KEYS.items()]
    return NodeConfig(
        "DC1", "concentrator", C1, str(folder / "DC1.sqlite"), block, "127.0.0.1", 0, "inprocess", registry=registry
    )


@pytest.fixture
def node(tmp_path):
    """(config, base URL) of a running node; stopped after the test."""
    cfg = config(tmp_path)
    svc = build_service(cfg)
    svc.start()
    try:
        with serve(svc.app) as url:
            yield cfg, url
    finally:
        svc.stop()


def client(url: str, caller: str = "MI1") -> NodeClient:
    key = {"operator": DSO_KEY, "MI9": STRANGER, **KEYS}[caller]
    return NodeClient(url, caller, key)


def ended() -> int:
    """The last slot of the chain that has ended."""
    return (int(time.time()) - START) // SLOT - 1


def bill(slot: int | None = None, **fields) -> bytes:
    body = {"slot": ended() if slot is None else slot, "energy_ws": -36_000, "amount": -2, "eca_audit_ok": True}
    return json.dumps({**body, **fields}).encode()


BAD = [  # (why, caller, body (or a function that makes it), HTTP status, code)
    ("unknown meter", "MI9", bill(), 401, "http-401"),
    ("not a meter", "operator", bill(), 403, "bill-not-a-meter"),
    ("current slot", "MI1", lambda: bill(ended() + 1), 400, "bill-future-slot"),  # made when the test runs
    ("future slot", "MI1", bill(ended() + 100), 400, "bill-future-slot"),
    ("negative slot", "MI1", bill(-1), 400, "bill-out-of-range"),
    ("energy too large", "MI1", bill(energy_ws=MAX_AMOUNT + 1), 400, "bill-out-of-range"),
    ("amount too negative", "MI1", bill(amount=-MAX_AMOUNT - 1), 400, "bill-out-of-range"),
    ("not JSON", "MI1", b"{slot: 1", 400, "bill-malformed"),
    ("not an object", "MI1", b"[1, 2, 3, true]", 400, "bill-malformed"),
    ("missing field", "MI1", json.dumps({"slot": 1, "energy_ws": 0, "amount": 0}).encode(), 400, "bill-malformed"),
    ("field the DSO may not see", "MI1", bill(trade="ab" * 32), 400, "bill-malformed"),
    ("fractional energy", "MI1", bill(energy_ws=1.5), 400, "bill-malformed"),
    ("amount as text", "MI1", bill(amount="7"), 400, "bill-malformed"),
    ("flag as a number", "MI1", bill(eca_audit_ok=1), 400, "bill-malformed"),
    ("empty body", "MI1", b"", 400, "bill-malformed"),
]


@pytest.mark.parametrize(("why", "caller", "body", "status", "code"), BAD, ids=[row[0] for row in BAD])
def test_a_bad_report_gets_its_code_is_counted_and_nothing_is_stored(node, why, caller, body, status, code):
    cfg, url = node
    body = body() if callable(body) else body
    with client(url, caller) as c, pytest.raises(ApiError) as e:
        c.call("POST", "/v1/bills", body=body, kind="application/json")
    assert (e.value.status, e.value.code) == (status, code), e.value
    with client(url, "operator") as dso:
        view = dso.bills()
    assert view["slots"] == [] and view["total"]["reports"] == 0
    assert view["refused"] == {code: 1}
    assert httpx.get(url + "/v1/health").json()["healthy"] is not None  # the node still answers


def test_a_repeated_report_is_idempotent_and_a_different_one_is_refused(node):
    _, url = node
    t = ended()
    with client(url) as mi1, client(url, "MI2") as mi2, client(url, "operator") as dso:
        assert mi1.report_bill(t, 36_000, 4, True) == {"meter": "MI1", "slot": t, "new": True}
        assert mi1.report_bill(t, 36_000, 4, True)["new"] is False  # sent again after a lost answer: kept once
        with pytest.raises(ApiError) as e:
            mi1.report_bill(t, 36_000, 5, True)
        assert (e.value.status, e.value.code) == (409, "bill-conflict") and "slot" in e.value.message
        mi2.report_bill(t, -72_000, -3, False)
        mi2.report_bill(t - 1, 7_200, 1, True)
        view = dso.bills()
    assert view["slots"] == [
        {"slot": t - 1, "meters": 1, "energy_ws": 7_200, "amount": 1, "audit_failed": 0},
        {"slot": t, "meters": 2, "energy_ws": -36_000, "amount": 1, "audit_failed": 1},  # MI1's first bill only
    ]
    assert view["total"] == {"slots": 2, "reports": 3, "energy_ws": -28_800, "amount": 2, "audit_failed": 1}
    assert view["refused"] == {"bill-conflict": 1}
    dashboard = httpx.get(url + "/v1/dashboard").json()  # unsigned: the aggregate only
    assert dashboard["bills"]["total"] == view["total"] and dashboard["bills"]["slots"] == view["slots"]
    assert "MI1" not in json.dumps(dashboard["bills"])


@pytest.fixture(scope="module")
def pg_server():
    """A PostgreSQL server on loopback for this module (started on first use), stopped after it."""
    requires.postgres()
    server = PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_config(request, tmp_path):
    """``config`` with the node's store in SQLite (``tmp_path``) or in a fresh database of a real PostgreSQL."""
    cfg = config(tmp_path)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_server").create_database(f"bills_{uuid.uuid4().hex[:12]}")
        cfg = dataclasses.replace(cfg, store=url)
    return cfg


def kept_rows(cfg: NodeConfig, tmp_path) -> list[tuple]:
    """The bills the node's database holds, read with the database's own driver (not the code under test)."""
    if "://" in cfg.store:
        with psycopg.connect(cfg.store) as db:
            return db.execute("SELECT meter, slot, energy_ws, amount, eca_audit_ok::int FROM bills").fetchall()
    path = tmp_path / "DC1.sqlite.bills"  # the bills file beside the chain's
    assert path.exists()
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT meter, slot, energy_ws, amount, eca_audit_ok FROM bills").fetchall()
    finally:
        db.close()


def test_the_bills_survive_a_restart_of_the_node(store_config, tmp_path):
    cfg, t = store_config, ended()
    first = build_service(cfg)
    with serve(first.app) as url, client(url) as mi1:
        mi1.report_bill(t, 36_000, 4, True)
    first.stop()
    assert kept_rows(cfg, tmp_path) == [("MI1", t, 36_000, 4, 1)]
    again = build_service(cfg)
    try:
        with serve(again.app) as url, client(url) as mi1, client(url, "operator") as dso:
            assert dso.bills()["total"]["reports"] == 1
            assert mi1.report_bill(t, 36_000, 4, True)["new"] is False  # the meter's retry after the restart
            with pytest.raises(ApiError, match="bill-conflict"):
                mi1.report_bill(t, 0, 0, True)
            assert dso.bills()["slots"] == [
                {"slot": t, "meters": 1, "energy_ws": 36_000, "amount": 4, "audit_failed": 0}
            ]
    finally:
        again.stop()


def test_the_meters_outbox_keeps_a_bill_until_the_node_has_it(tmp_path):
    """``BillOutbox`` (what a market's meter reports with): a refused connection keeps the bills for the next flush;
    a node restarted after it kept a bill but before the meter saw the answer gets it again, idempotently; a bill
    the node refuses for good is dropped, not retried forever."""
    cfg, t, port = config(tmp_path), ended(), free_port()
    url = f"http://127.0.0.1:{port}"
    outbox = BillOutbox([client(url)])
    first = [BillReport(slot=t - 2, energy_ws=3600, amount=1, eca_audit_ok=True)]
    outbox.add(first + [BillReport(slot=t - 1, energy_ws=-7200, amount=-1, eca_audit_ok=True)])
    assert outbox.flush() == 2  # nothing listens yet: connection refused, both kept
    for _ in range(2):  # the node restarted between the two
        svc = build_service(cfg)
        try:
            with serve(svc.app, port=port), client(url, "operator") as dso:
                assert outbox.flush() == 0
                assert dso.bills()["total"] == {
                    "slots": 2,
                    "reports": 2,
                    "energy_ws": -3600,
                    "amount": 0,
                    "audit_failed": 0,
                }
                outbox.add(first)  # the answer was lost: the meter sends it again after the restart
        finally:
            svc.stop()
    conflict = BillReport(slot=t - 1, energy_ws=0, amount=0, eca_audit_ok=True)  # not what the node kept
    outbox.add([conflict])
    svc = build_service(cfg)
    try:
        with serve(svc.app, port=port), client(url, "operator") as dso:
            assert outbox.flush() == 0  # the repeat of slot t - 2 kept once, the conflict dropped
            assert outbox.dropped == [(url, conflict, "bill-conflict")]
            assert dso.bills()["total"]["reports"] == 2
    finally:
        svc.stop()


def test_the_dso_console_shows_the_aggregate_from_another_machine(node, tmp_path):
    """``gridledger dso bills`` asks the node (signed as the DSO), as a DSO that does not see the meters' files."""
    _, url = node
    t = ended()
    with client(url) as mi1, client(url, "MI2") as mi2:
        mi1.report_bill(t, 36_000, 7, True)
        mi2.report_bill(t, -7_200, -2, False)
    seed = tmp_path / "dso.seed"
    seed.write_text(DSO_KEY.seed.hex())
    seed.chmod(0o600)
    args = ["dso", "bills", "--node", url, "--key", str(seed)]
    shown = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"{t} │ 2 " in shown.output and "8.0" in shown.output, shown.output
    assert "in all: 5 minor units billed, 8.0 Wh settled, 1 slots, 2 reports, 1 failed ECA audits" in shown.output
    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert json.loads(as_json.stdout)["total"]["reports"] == 2
    seed.write_text(KEYS["MI1"].seed.hex())  # a meter's key under the DSO's id: not signed by the DSO
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "refused: http-401" in " ".join(refused.stderr.split()), refused.output


def test_the_schema_documents_the_bill_route(node):
    _, url = node
    op = httpx.get(url + "/openapi.json").json()["paths"]["/v1/bills"]["post"]
    assert {"400", "401", "403", "409", "413", "429", "503"} <= set(op["responses"]) and op["security"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"slot", "energy_ws", "amount", "eca_audit_ok"}
    assert schema["additionalProperties"] is False


@pytest.mark.postgres
def test_a_lost_database_connection_refuses_one_report_and_the_next_is_kept(pg_server, tmp_path):
    """The bills' PostgreSQL connection is cut (the server ends its backend, as a restart of the server would): that
    report gets 503 ``bill-store-unavailable`` (the meter's outbox sends it again), the node reconnects and keeps
    the next one; nothing is lost or doubled."""
    url = pg_server.create_database(f"bills_{uuid.uuid4().hex[:12]}")
    cfg, t = dataclasses.replace(config(tmp_path), store=url), ended()
    svc = build_service(cfg)
    svc.start()
    try:
        with serve(svc.app) as api, client(api) as mi1, client(api, "operator") as dso:
            mi1.report_bill(t - 1, 3_600, 1, True)
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (svc.bills.db.info.backend_pid,))
            with pytest.raises(ApiError) as e:
                mi1.report_bill(t, 36_000, 4, True)
            assert (e.value.status, e.value.code) == (503, "bill-store-unavailable"), e.value
            assert "the bills' database postgresql://" in e.value.message, e.value.message
            assert mi1.report_bill(t, 36_000, 4, True)["new"] is True  # the retry, on a new connection
            view = dso.bills()
            assert view["total"] == {"slots": 2, "reports": 2, "energy_ws": 39_600, "amount": 5, "audit_failed": 0}
            assert view["refused"] == {"bill-store-unavailable": 1}
            assert httpx.get(api + "/v1/health").json()["healthy"]  # the chain's own connection was not touched
    finally:
        svc.stop()
    assert sorted(kept_rows(cfg, tmp_path)) == [("MI1", t - 1, 3_600, 1, 1), ("MI1", t, 36_000, 4, 1)]


def test_bills_the_meter_could_not_report_survive_a_restart_of_its_process(tmp_path):
    """A meter's outbox with a file: the bills a node has not acknowledged are still sent after the meter's process
    was killed and started again (a new outbox on the same file), and the file empties once the node kept them."""
    cfg, t, port = config(tmp_path), ended(), free_port()
    url, path = f"http://127.0.0.1:{port}", tmp_path / "unacknowledged-bills-MI1.json"
    bills = [BillReport(slot=t - 1, energy_ws=3600, amount=2, eca_audit_ok=True)]
    BillOutbox([client(url)], path).add(bills)
    assert BillOutbox([client(url)], path).flush() == 1  # nothing listens: kept in the file
    assert json.loads(path.read_text()) == {url: [bills[0].model_dump()]}
    svc = build_service(cfg)
    try:
        with serve(svc.app, port=port), client(url, "operator") as dso:
            again = BillOutbox([client(url)], path)  # the process started again
            assert again.pending == {url: bills} and again.flush() == 0
            assert dso.bills()["total"]["reports"] == 1 and dso.bills()["total"]["amount"] == 2
    finally:
        svc.stop()
    assert json.loads(path.read_text()) == {url: []} and BillOutbox([client(url)], path).pending == {url: []}
