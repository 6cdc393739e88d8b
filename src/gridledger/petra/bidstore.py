"""PETra's bid storage service: anonymous offers and bids, each backed by a proof of control of its assets.

An anonymous order (Laszka et al. 2017, "anonymous bids") names a one-time address to be paid at, a limit
price, the asset(s) it is backed by, and an expiry: an **offer** references one EPA covering its interval with
at least its power; a **bid** references one ECA (likewise) and one FA worth at least its largest possible
payment. The poster proves control of every referenced asset by signing a fresh challenge of the store
together with the order's fields, with the key of the asset's one-time address; the store checks on the
chain that each asset exists, is unspent and is owned by that key. So the store learns nothing but the order
(it is reached through onion circuits, :mod:`gridledger.petra.onion`), yet holds no unbacked order.

Rejects (``BidStoreError.code``): ``bid-bad-order`` (malformed fields), ``bid-bad-challenge`` (unknown or used
challenge), ``bid-expired`` (the order's expiry or start, or the asset's interval, is not in the future),
``bid-asset-unknown`` (no such output on the chain), ``bid-asset-spent`` (the output was spent),
``bid-not-owner`` (the proving key does not own the asset), ``bid-bad-signature``, ``bid-double-posted``
(the asset already backs an open order), ``bid-asset-mismatch`` (wrong kind, interval, power or amount),
``bid-unknown-order`` (cancel of an order that is not open), ``bid-not-active`` (this store is the market's standby
now, not its active store: send the request to the other one).

Money: ``limit_price`` is in minor units per kWh, as in :mod:`gridledger.market.orders`; a payment for ``p`` W
over one slot of ``slot_seconds`` at price ``c`` is :func:`gridledger.ledger.units.energy_cost` of
``p · slot_seconds`` W·s at ``c`` (rounded down). A bid must be backed by FA worth its whole power and interval at
its limit price, by the same function: what its partial fills pay, each rounded down, never adds up to more.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gridledger.chain import Chain
from gridledger.ledger import crypto
from gridledger.ledger.assets import OUTPOINT_BYTES, AssetKind, Output, split_outpoint
from gridledger.ledger.crypto import ADDRESS_BYTES, PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.units import energy_cost
from gridledger.market.orders import Order, Side
from gridledger.petra.onion import Circuit, Stream

_TAG = b"gridledger/bid/v1"
CHALLENGE_BYTES = 32
#: Most unanswered challenges kept (the oldest are forgotten first).
MAX_CHALLENGES = 100_000
#: The refusal of a store that is not the market's active one (see :class:`BidStoreService`).
NOT_ACTIVE = "bid-not-active"


class BidStoreError(Exception):
    """The store refuses a request; ``code`` is short and stable, ``message`` says exactly why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AnonOrder:
    """An anonymous offer or bid.

    Parameters
    ----------
    side : ``offer`` (sells EPA) or ``bid`` (buys with ECA + FA).
    feeder : the feeder of the microgrid the energy flows on (see docs/privacy.md on what it reveals).
    start_slot, end_slot : slots ``[start_slot, end_slot)`` traded; power ``power_w`` W in each.
    limit_price : minor money units per kWh (an offer sells at no less, a bid buys at no more).
    expiry : the order is open while the current slot is below ``expiry``.
    pay_to : one-time address to receive the counterparty's assets.
    assets : outpoints backing the order: ``(EPA,)`` for an offer, ``(ECA, FA)`` for a bid.
    """

    side: Side
    feeder: str
    start_slot: int
    end_slot: int
    power_w: int
    limit_price: int
    expiry: int
    pay_to: bytes
    assets: tuple[bytes, ...]

    def fields(self) -> bytes:
        """Canonical encoding of the order (raises ``Reject`` on out-of-range fields)."""
        w = Writer().u8(1 if self.side is Side.OFFER else 2, "side").name(self.feeder, "feeder")
        w.u32(self.start_slot, "start_slot").u32(self.end_slot, "end_slot").u64(self.power_w, "power_w")
        w.u64(self.limit_price, "limit_price").u32(self.expiry, "expiry").fixed(
            self.pay_to, ADDRESS_BYTES, "pay_to"
        )
        w.count(len(self.assets), "assets")
        for op in self.assets:
            w.fixed(op, OUTPOINT_BYTES, "asset outpoint")
        return w.bytes()

    @property
    def order_id(self) -> str:
        """A stable handle: the first 16 bytes of SHA-256 over the order's fields, in hex."""
        return crypto.sha256(_TAG + self.fields())[:16].hex()

    def proof_message(self, challenge: bytes) -> bytes:
        """What each asset's owner signs: the store's challenge and the order's fields."""
        return crypto.sha256(_TAG + b"post" + challenge + self.fields())

    def prove(self, challenge: bytes, keys: Iterable[KeyPair]) -> tuple[tuple[bytes, bytes], ...]:
        """``(public key, signature)`` per referenced asset; ``keys`` are their owners, in order."""
        msg = self.proof_message(challenge)
        return tuple((k.public, k.sign(msg)) for k in keys)

    def market_order(self) -> Order:
        """The order as the clearing sees it (no assets, no address)."""
        return Order(
            self.order_id,
            self.side,
            self.feeder,
            self.start_slot,
            self.end_slot,
            self.power_w,
            self.limit_price,
        )

    def to_json(self) -> dict:
        return {
            "side": str(self.side),
            "feeder": self.feeder,
            "start_slot": self.start_slot,
            "end_slot": self.end_slot,
            "power_w": self.power_w,
            "limit_price": self.limit_price,
            "expiry": self.expiry,
            "pay_to": self.pay_to.hex(),
            "assets": [op.hex() for op in self.assets],
        }

    @classmethod
    def from_json(cls, data: dict) -> AnonOrder:
        """Parse a JSON order; any missing or ill-typed field is a ``bid-bad-order``."""
        try:
            side = data["side"]
            if side not in ("offer", "bid"):
                raise ValueError(f"side must be 'offer' or 'bid', got {side!r}")
            ints = {k: data[k] for k in ("start_slot", "end_slot", "power_w", "limit_price", "expiry")}
            for k, v in ints.items():
                if type(v) is not int:
                    raise ValueError(f"{k} must be an integer, got {v!r}")
            if not isinstance(data["feeder"], str) or not isinstance(data["assets"], list):
                raise ValueError("feeder must be a string and assets a list")
            return cls(
                Side(side),
                data["feeder"],
                **ints,
                pay_to=bytes.fromhex(data["pay_to"]),
                assets=tuple(bytes.fromhex(a) for a in data["assets"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BidStoreError("bid-bad-order", f"malformed order: {e}") from None


@dataclass(frozen=True)
class Posted:
    """An open order with the outputs that back it (as they stood when it was posted)."""

    order: AnonOrder
    outputs: tuple[Output, ...]
    posted_slot: int
    seq: int

    @property
    def order_id(self) -> str:
        return self.order.order_id


class LedgerView:
    """What the store reads from the chain: unspent outputs, and which transactions ever existed.

    The txid index lets the store tell an asset that never existed (``bid-asset-unknown``) from one that was
    spent (``bid-asset-spent``); it follows the chain block by block.
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._outputs: dict[bytes, int] = {}
        self._height = -1

    def sync(self) -> None:
        for block in self.chain.blocks(self._height + 1):
            for tx in block.transactions:
                self._outputs[tx.txid] = len(getattr(tx, "outputs", ()))
            self._height = block.height

    def output(self, op: bytes) -> Output:
        """The unspent output at ``op``, or a ``bid-asset-unknown``/``bid-asset-spent`` error."""
        out = self.chain.state.output(op)
        if out is not None:
            return out
        self.sync()
        txid, index = split_outpoint(op)
        if index >= self._outputs.get(txid, 0):
            raise BidStoreError("bid-asset-unknown", f"no output {txid.hex()[:16]}…:{index} on the chain")
        raise BidStoreError("bid-asset-spent", f"output {txid.hex()[:16]}…:{index} is already spent")


class BidStore:
    """The book of open anonymous orders of one microgrid, checked against the chain.

    ``orders`` are the open ones; ``history`` every order ever accepted, in posting order (the store's
    records, which an adversary holding the store would have).

    Parameters
    ----------
    chain : the chain replica the store reads (unspent outputs; the txid index).
    """

    def __init__(self, chain: Chain) -> None:
        self.ledger = LedgerView(chain)
        self.slot_seconds = chain.genesis.slot_seconds
        self.orders: dict[str, Posted] = {}
        self.history: list[Posted] = []
        self._backing: dict[bytes, str] = {}
        self._challenges: OrderedDict[bytes, None] = OrderedDict()
        self._seq = 0

    def challenge(self) -> bytes:
        """A fresh random challenge, good for one post or cancel."""
        c = secrets.token_bytes(CHALLENGE_BYTES)
        self._challenges[c] = None
        while len(self._challenges) > MAX_CHALLENGES:
            self._challenges.popitem(last=False)
        return c

    def _use_challenge(self, challenge: bytes) -> None:
        if challenge not in self._challenges:
            raise BidStoreError("bid-bad-challenge", "the challenge was not issued by this store or was used")
        del self._challenges[challenge]

    @staticmethod
    def _check_fields(order: AnonOrder, proofs: tuple) -> bytes:
        want = 1 if order.side is Side.OFFER else 2
        problems = []
        if len(order.assets) != want:
            problems.append(f"an {order.side} references {want} asset(s), got {len(order.assets)}")
        if len(proofs) != len(order.assets):
            problems.append(f"{len(proofs)} proofs for {len(order.assets)} assets")
        if order.power_w <= 0 or order.start_slot >= order.end_slot:
            problems.append("power must be positive and start_slot < end_slot")
        if len(set(order.assets)) != len(order.assets):
            problems.append("an asset is referenced twice")
        try:
            check_name(order.feeder, "feeder")
            fields = order.fields()
        except Reject as e:
            problems.append(e.message)
        for pk, sig in proofs:
            if not isinstance(pk, bytes) or len(pk) != PUBKEY_BYTES or not isinstance(sig, bytes):
                problems.append(
                    f"a proof needs a {PUBKEY_BYTES}-byte key and a {SIGNATURE_BYTES}-byte signature"
                )
                break
        if problems:
            raise BidStoreError("bid-bad-order", "; ".join(problems))
        return fields

    def _check_assets(self, order: AnonOrder, outputs: list[Output]) -> None:
        a = [o.asset for o in outputs]
        kinds = (AssetKind.EPA,) if order.side is Side.OFFER else (AssetKind.ECA, AssetKind.FA)
        for asset, kind in zip(a, kinds, strict=True):
            if asset.kind != kind:
                raise BidStoreError(
                    "bid-asset-mismatch", f"an {order.side} needs {kind.name}, got {asset.describe()}"
                )
        energy = a[0]
        if not (
            energy.start <= order.start_slot
            and order.end_slot <= energy.end
            and energy.amount >= order.power_w
        ):
            raise BidStoreError(
                "bid-asset-mismatch",
                f"{energy.describe()} does not cover {order.power_w} W"
                f" over [{order.start_slot},{order.end_slot})",
            )
        if order.side is Side.BID:
            energy_ws = order.power_w * (order.end_slot - order.start_slot) * self.slot_seconds
            need = energy_cost(energy_ws, order.limit_price)
            if a[1].amount < need:
                raise BidStoreError(
                    "bid-asset-mismatch", f"FA {a[1].amount} is below the bid's maximum payment {need}"
                )

    def post(
        self, order: AnonOrder, challenge: bytes, proofs: tuple[tuple[bytes, bytes], ...], slot: int
    ) -> str:
        """Check and add an order at the current ``slot``; returns its id."""
        self._check_fields(order, proofs)
        self._use_challenge(challenge)
        if order.expiry <= slot or order.start_slot <= slot:
            raise BidStoreError(
                "bid-expired",
                f"the order (start {order.start_slot}, expiry {order.expiry}) is not after slot {slot}",
            )
        outputs = []
        msg = order.proof_message(challenge)
        for i, (op, (pk, sig)) in enumerate(zip(order.assets, proofs, strict=True)):
            out = self.ledger.output(op)
            if out.asset.kind != AssetKind.FA and out.asset.end <= slot:
                raise BidStoreError(
                    "bid-expired", f"asset {i} ({out.asset.describe()}) ended before slot {slot}"
                )
            if crypto.address_of(pk) != out.owner:
                raise BidStoreError("bid-not-owner", f"asset {i} is not owned by the key that proves it")
            if not crypto.verify(pk, msg, sig):
                raise BidStoreError("bid-bad-signature", f"the proof of asset {i} is not a valid signature")
            if op in self._backing:
                raise BidStoreError(
                    "bid-double-posted", f"asset {i} already backs open order {self._backing[op]}"
                )
            outputs.append(out)
        self._check_assets(order, outputs)
        oid = order.order_id
        self._seq += 1
        self.orders[oid] = Posted(order, tuple(outputs), slot, self._seq)
        self.history.append(self.orders[oid])
        for op in order.assets:
            self._backing[op] = oid
        return oid

    def cancel(self, order_id: str, challenge: bytes, proofs: tuple[tuple[bytes, bytes], ...]) -> None:
        """Withdraw an open order; the proofs sign the challenge and the order as for posting."""
        posted = self.orders.get(order_id)
        if posted is None:
            raise BidStoreError("bid-unknown-order", f"no open order {order_id}")
        self._check_fields(posted.order, proofs)
        self._use_challenge(challenge)
        msg = crypto.sha256(b"cancel" + posted.order.proof_message(challenge))
        for i, ((pk, sig), out) in enumerate(zip(proofs, posted.outputs, strict=True)):
            if crypto.address_of(pk) != out.owner:
                raise BidStoreError("bid-not-owner", f"asset {i} is not owned by the key that proves it")
            if not crypto.verify(pk, msg, sig):
                raise BidStoreError(
                    "bid-bad-signature", f"the cancel proof of asset {i} is not a valid signature"
                )
        self.remove(order_id)

    def remove(self, order_id: str) -> Posted:
        """Take an order off the book (cancelled, expired, spent, or handed to settlement)."""
        posted = self.orders.pop(order_id)
        for op in posted.order.assets:
            self._backing.pop(op, None)
        return posted

    def open_orders(self, slot: int, side: Side | None = None) -> list[Posted]:
        """The open orders at ``slot``, in posting order; expired or spent ones are dropped first."""
        state = self.ledger.chain.state
        for oid, p in list(self.orders.items()):
            if (
                p.order.expiry <= slot
                or p.order.start_slot <= slot
                or any(state.output(op) is None for op in p.order.assets)
            ):
                self.remove(oid)
        return [p for p in self.orders.values() if side is None or p.order.side is side]


def cancel_proofs(
    order: AnonOrder, challenge: bytes, keys: Iterable[KeyPair]
) -> tuple[tuple[bytes, bytes], ...]:
    """``(public key, signature)`` per asset for cancelling ``order`` with a fresh ``challenge``."""
    msg = crypto.sha256(b"cancel" + order.proof_message(challenge))
    return tuple((k.public, k.sign(msg)) for k in keys)


# ---------------------------------------------------------------------------------------------- service
RequestHandler = Callable[[dict], Awaitable[dict]]


class BidStoreService:
    """The bid store behind an onion service: JSON requests ``{"op": …}``, one JSON answer each.

    Operations: ``challenge``; ``post`` (``order``, ``challenge``, ``proofs``); ``cancel`` (``order_id``,
    ``challenge``, ``proofs``); ``list`` (optional ``side``); ``active`` (``{"active": bool}``: whether this store
    takes orders now). Errors come back as ``{"error": code, "message": …}``. More operations (e.g. settlement)
    can be added with :meth:`register`. ``senders`` records the network identity each request arrived from —
    always an exit relay, never a prosumer — and ``log`` the store's record of each post and cancel: ``(slot,
    operation, order id, exit relay)``; ``refused`` counts the refusals by error code.

    ``active``: whether this store is the market's active one now (default: always). While it is not, every
    operation but the passive ones (``active``, and those registered ``passive``) is refused with
    :data:`NOT_ACTIVE`, so a prosumer turns to the other store.
    """

    def __init__(self, store: BidStore, now: Callable[[], int], active: Callable[[], bool] | None = None) -> None:
        self.store = store
        self.now = now
        self.active = active or (lambda: True)
        self.senders: list[str] = []
        self.log: list[tuple[int, str, str, str]] = []
        #: Refused requests by error code.
        self.refused: Counter[str] = Counter()
        self.handlers: dict[str, RequestHandler] = {
            "challenge": self._challenge,
            "post": self._post,
            "cancel": self._cancel,
            "list": self._list,
            "active": self._active,
        }
        #: The operations served while the store is not active.
        self.passive: set[str] = {"active"}

    def register(self, op: str, handler: RequestHandler, passive: bool = False) -> None:
        """Serve ``op`` with ``handler``; ``passive``: also while the store is not active."""
        self.handlers[op] = handler
        if passive:
            self.passive.add(op)

    async def handle(self, stream: Stream, data: bytes) -> None:
        """Answer one request arriving on ``stream`` (the onion service handler)."""
        self.senders.append(stream.exit_relay)
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise BidStoreError("bid-bad-request", "a request is a JSON object")
            handler = self.handlers.get(request.get("op"))
            if handler is None:
                raise BidStoreError("bid-bad-request", f"unknown operation {request.get('op')!r}")
            if request["op"] not in self.passive and not self.active():
                raise BidStoreError(NOT_ACTIVE, f"this bid store is on standby: send {request['op']!r} to the other")
            answer = await handler(request)
        except BidStoreError as e:
            answer = {"error": e.code, "message": e.message}
        except (ValueError, KeyError, TypeError) as e:
            answer = {"error": "bid-bad-request", "message": f"malformed request: {e}"}
        if "error" in answer:
            self.refused[answer["error"]] += 1
        await stream.reply(json.dumps(answer).encode())

    async def _active(self, request: dict) -> dict:
        return {"active": self.active()}

    async def _challenge(self, request: dict) -> dict:
        return {"challenge": self.store.challenge().hex()}

    @staticmethod
    def _proofs(request: dict) -> tuple[tuple[bytes, bytes], ...]:
        return tuple((bytes.fromhex(pk), bytes.fromhex(sig)) for pk, sig in request["proofs"])

    async def _post(self, request: dict) -> dict:
        order = AnonOrder.from_json(request["order"])
        oid = self.store.post(order, bytes.fromhex(request["challenge"]), self._proofs(request), self.now())
        self.log.append((self.now(), "post", oid, self.senders[-1]))
        return {"order_id": oid}

    async def _cancel(self, request: dict) -> dict:
        self.store.cancel(request["order_id"], bytes.fromhex(request["challenge"]), self._proofs(request))
        self.log.append((self.now(), "cancel", request["order_id"], self.senders[-1]))
        return {"cancelled": request["order_id"]}

    async def _list(self, request: dict) -> dict:
        side = request.get("side")
        posted = self.store.open_orders(self.now(), Side(side) if side else None)
        return {"orders": [{"order_id": p.order_id, **p.order.to_json()} for p in posted]}


class BidStoreClient:
    """A prosumer's access to the bid store through one onion circuit."""

    def __init__(self, circuit: Circuit, timeout: float = 10.0) -> None:
        self.circuit = circuit
        self.timeout = timeout

    async def call(self, op: str, **fields) -> dict:
        """One request; a refusal raises :class:`BidStoreError` with the store's code."""
        answer = json.loads(
            await self.circuit.request(json.dumps({"op": op, **fields}).encode(), self.timeout)
        )
        if "error" in answer:
            raise BidStoreError(answer["error"], answer["message"])
        return answer

    async def post(self, order: AnonOrder, keys: Iterable[KeyPair]) -> str:
        """Post ``order``, proving control with ``keys`` (the owners of its assets, in order)."""
        challenge = bytes.fromhex((await self.call("challenge"))["challenge"])
        proofs = [[pk.hex(), sig.hex()] for pk, sig in order.prove(challenge, keys)]
        return (await self.call("post", order=order.to_json(), challenge=challenge.hex(), proofs=proofs))[
            "order_id"
        ]

    async def cancel(self, order: AnonOrder, keys: Iterable[KeyPair]) -> None:
        challenge = bytes.fromhex((await self.call("challenge"))["challenge"])
        proofs = [[pk.hex(), sig.hex()] for pk, sig in cancel_proofs(order, challenge, keys)]
        await self.call("cancel", order_id=order.order_id, challenge=challenge.hex(), proofs=proofs)

    async def list(self, side: Side | None = None) -> list[dict]:
        return (await self.call("list", **({"side": str(side)} if side else {})))["orders"]
