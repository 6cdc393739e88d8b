"""The bills meters report to a node (``POST /v1/bills``), kept durably, and their aggregate per slot; the meter's
outbox that reports them.

A meter reports per slot only what the DSO may see (docs/privacy.md): the energy to settle (W·s, import positive),
the amount (minor units, negative when the DSO pays) and whether its ECA audit held. The node keeps one report per
meter and slot, durably: in a SQLite file beside its SQLite store (``<store>.bills``), or in a table ``bills`` beside
the chain's tables in its PostgreSQL store. An identical second report is accepted and changes nothing, a different
one is refused (``bill-conflict``); a database that fails is ``bill-store-unavailable`` (503: the meter retries).
It serves the aggregate only: per slot the meters that reported, the energy settled and the amount billed in all, and
the reports whose ECA audit failed.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridledger.ledger.assets import MAX_AMOUNT
from gridledger.node.client import ApiError, NodeClient, NodeUnreachable
from gridledger.node.durable import write_json
from gridledger.store import StoreError
from gridledger.store.postgres import CONNECT_TIMEOUT_S, SCHEMA_LOCK, redact

#: HTTP statuses of a refusal that sending the same bill again cannot change (400 ``bill-future-slot`` excepted).
FINAL = (400, 403, 409)
log = logging.getLogger("gridledger.bills")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bills (meter TEXT NOT NULL, slot INTEGER NOT NULL, energy_ws INTEGER NOT NULL, "
    "amount INTEGER NOT NULL, eca_audit_ok INTEGER NOT NULL, PRIMARY KEY (meter, slot)) WITHOUT ROWID, STRICT"
)
PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bills (meter TEXT NOT NULL, slot BIGINT NOT NULL, energy_ws BIGINT NOT NULL, "
    "amount BIGINT NOT NULL, eca_audit_ok BOOLEAN NOT NULL, PRIMARY KEY (meter, slot))"
)


class BillReport(BaseModel):
    """One meter's bill of one slot, as the DSO may see it (the meter is the signed caller, not in the body)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    slot: int = Field(ge=0, description="the chain slot billed; it must have ended")
    energy_ws: int = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="energy to settle with the DSO (W·s, import > 0)")
    amount: int = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="the bill (minor units; negative: the DSO pays)")
    eca_audit_ok: bool = Field(description="whether the meter's ECA audit of the slot held")


class BillError(ValueError):
    """A report refused: ``code`` (``bill-malformed``, ``bill-out-of-range``, ``bill-future-slot``: HTTP 400;
    ``bill-not-a-meter``: 403; ``bill-conflict``: 409; ``bill-store-unavailable``: 503), the message and the HTTP
    ``status``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def parse_report(body: bytes, current_slot: int) -> BillReport:
    """The report in a request body (JSON), for a slot before ``current_slot``; ``BillError`` saying what is wrong."""
    try:
        report = BillReport.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        ranged = all(err["type"] in ("greater_than_equal", "less_than_equal") for err in errors)
        text = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in errors)
        raise BillError("bill-out-of-range" if ranged else "bill-malformed", text) from None
    if report.slot >= current_slot:
        raise BillError("bill-future-slot", f"slot {report.slot} has not ended (the chain is in slot {current_slot})")
    return report


@dataclass
class SlotTotal:
    """What the meters reported for one slot, summed: reports, energy (W·s), amount (minor units), failed audits."""

    meters: int = 0
    energy_ws: int = 0
    amount: int = 0
    audit_failed: int = 0

    def add(self, r: BillReport) -> None:
        self.meters += 1
        self.energy_ws += r.energy_ws
        self.amount += r.amount
        self.audit_failed += not r.eca_audit_ok


class BillBook:
    """The reports a node received, at ``location``: a SQLite file (``:memory:``: not kept) or a PostgreSQL URL (the
    node's store: table ``bills`` beside the chain's), with their per-slot totals in memory (rebuilt on open; a
    database that cannot be opened is a ``StoreError``). Thread-safe."""

    def __init__(self, location: str | Path = ":memory:") -> None:
        self.location = str(location)
        self.postgres = "://" in self.location
        self._lock = threading.Lock()
        try:
            self.db = self._connect()
        except (sqlite3.Error, psycopg.Error) as e:
            raise StoreError(f"cannot open the bills' database {redact(self.location)}: {_oneline(e)}") from None
        self.slots: dict[int, SlotTotal] = {}
        for slot, energy_ws, amount, ok in self._sql("SELECT slot, energy_ws, amount, eca_audit_ok FROM bills"):
            self.slots.setdefault(slot, SlotTotal()).add(
                BillReport(slot=slot, energy_ws=energy_ws, amount=amount, eca_audit_ok=bool(ok))
            )

    def _connect(self) -> sqlite3.Connection | psycopg.Connection:
        if not self.postgres:
            db = sqlite3.connect(self.location, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
            db.execute(SCHEMA)
            return db
        db = psycopg.connect(self.location, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)  # durable at COMMIT
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))  # the store's lock: one creator at a time
            db.execute(PG_SCHEMA)
        return db

    def _sql(self, statement: str, args: tuple = ()) -> list[tuple]:
        """The rows of ``statement`` (``?`` placeholders); a lost PostgreSQL connection is opened again first;
        ``BillError`` (503, ``bill-store-unavailable``) if the database fails."""
        try:
            if self.postgres and self.db.closed:
                self.db = self._connect()
            cur = self.db.execute(statement.replace("?", "%s") if self.postgres else statement, args)
            return cur.fetchall() if cur.description else []
        except (sqlite3.Error, psycopg.Error) as e:
            raise BillError(
                "bill-store-unavailable", f"the bills' database {redact(self.location)} failed: {_oneline(e)}", 503
            ) from None

    def add(self, meter: str, r: BillReport) -> bool:
        """Keep ``meter``'s report; True if new, False if the same one was kept already; ``BillError`` (409,
        ``bill-conflict``) if the meter reported another bill for that slot."""
        with self._lock:
            rows = self._sql(
                "SELECT energy_ws, amount, eca_audit_ok FROM bills WHERE meter = ? AND slot = ?", (meter, r.slot)
            )
            if rows:
                row = rows[0]
                if (row[0], row[1], bool(row[2])) == (r.energy_ws, r.amount, r.eca_audit_ok):
                    return False
                raise BillError(
                    "bill-conflict",
                    f"meter {meter} already reported another bill for slot {r.slot} "
                    f"(energy {row[0]} W·s, amount {row[1]}): a slot is billed once",
                    409,
                )
            row = (meter, r.slot, r.energy_ws, r.amount, r.eca_audit_ok)
            self._sql("INSERT INTO bills VALUES (?, ?, ?, ?, ?)", row)
            self.slots.setdefault(r.slot, SlotTotal()).add(r)
            return True

    def view(self, last: int | None = None) -> dict:
        """The aggregate: the latest ``last`` slots (all if None), oldest first, and the totals over every slot."""
        with self._lock:
            slots = sorted(self.slots.items())
        shown = slots if last is None else slots[-last:] if last > 0 else []
        return {
            "slots": [{"slot": s, **vars(t)} for s, t in shown],
            "total": {
                "slots": len(slots),
                "reports": sum(t.meters for _, t in slots),
                "energy_ws": sum(t.energy_ws for _, t in slots),
                "amount": sum(t.amount for _, t in slots),
                "audit_failed": sum(t.audit_failed for _, t in slots),
            },
        }

    def close(self) -> None:
        self.db.close()


def _oneline(e: Exception) -> str:
    return " ".join(str(e).split())


class BillOutbox:
    """A meter's side: the bills each of its nodes has not acknowledged yet, sent in slot order by :meth:`flush`
    (called once a round) until each node kept them. A node that does not answer, throttles, fails or finds a slot
    not ended yet is tried again next time; a refusal that no retry can change (``bill-conflict``, a malformed or
    out-of-range bill, not a meter) is logged and dropped. Thread-safe: bills may be added while a flush runs.

    ``path``: a JSON file that keeps what is pending per node (written durably on every change, read back when the
    outbox is made again), so a meter's process that is killed and started again still reports every bill."""

    def __init__(self, clients: list[NodeClient], path: Path | None = None) -> None:
        self.clients = clients
        self.path = path
        kept = json.loads(path.read_text()) if path is not None and path.exists() else {}
        self.pending: dict[str, list[BillReport]] = {
            c.base_url: [BillReport.model_validate(b) for b in kept.get(c.base_url, [])] for c in clients
        }
        self.dropped: list[tuple[str, BillReport, str]] = []
        self._lock = threading.Lock()

    def add(self, bills: list[BillReport]) -> None:
        with self._lock:
            for queue in self.pending.values():
                queue.extend(bills)
            self._save()

    def _save(self) -> None:
        """Keep what is pending in :attr:`path` (with the lock held)."""
        if self.path is not None:
            write_json(self.path, {url: [b.model_dump() for b in q] for url, q in self.pending.items()})

    def flush(self) -> int:
        """Send every pending bill; how many are still pending (over all nodes)."""
        for c in self.clients:
            while (b := self._head(c.base_url)) is not None:
                try:
                    c.report_bill(b.slot, b.energy_ws, b.amount, b.eca_audit_ok)
                except ApiError as e:
                    if e.status not in FINAL or e.code == "bill-future-slot":
                        log.warning("%s: bill of slot %d not kept yet: %s", c.base_url, b.slot, e)
                        break
                    log.error("%s refused the bill of slot %d for good: %s", c.base_url, b.slot, e)
                    self.dropped.append((c.base_url, b, e.code))
                except NodeUnreachable as e:
                    log.warning("bill of slot %d not reported yet: %s", b.slot, e)
                    break
                with self._lock:
                    self.pending[c.base_url].pop(0)
                    self._save()
        with self._lock:
            return sum(map(len, self.pending.values()))

    def _head(self, url: str) -> BillReport | None:
        with self._lock:
            return self.pending[url][0] if self.pending[url] else None
