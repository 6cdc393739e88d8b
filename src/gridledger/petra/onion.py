"""Anonymous channels: onion routing through the microgrid's smart meters (PETra, "anonymous communication").

PETra hides a prosumer's network identity from the bid storage service and from its fellow mixers by onion
routing, with the meters acting as onion routers whose list is published on the ledger (Laszka et al. 2017,
§ anonymous communication; the design follows Tor's circuits, Dingledine, Mathewson, Syverson 2004).

Layers, from the bottom:

* a **transport** moves byte strings between named nodes: ``send(to, data)`` and one handler per node,
  called with ``(sender, data)`` for every message, in order per sender. :class:`InProcessNetwork` connects
  nodes inside one process; :class:`TcpTransport` connects processes and machines over TCP (asyncio streams;
  length-prefixed frames), optionally through a SOCKS5 proxy such as Tor's (``socks=("127.0.0.1", 9050)``).
  The sender name a handler receives is what a real network would reveal (the peer's address).
* the **relay directory**: every meter publishes a :class:`RelayDescriptor` (its node name and a separate
  X25519 relay key, signed with the meter's ledger key); :class:`RelayDirectory` keeps those whose meter the
  DSO authorized on the chain at the current slot.
* an :class:`OnionNode` per node is a relay (if it has a relay key), a client (:meth:`OnionNode.open_circuit`)
  and a service (:meth:`OnionNode.serve`). A client builds a circuit through ``hops`` (≥ 3) random relays with
  one onion of X25519 sealed boxes (libsodium), each layer giving one relay its symmetric circuit key, its
  circuit id toward the next hop and the next hop's name. Data then travels under one AES-256-GCM layer
  per hop (each relay peels one forward and adds one backward; a fresh random 96-bit nonce per layer of
  each cell), padded to a multiple of :data:`PAD_BYTES`. The exit relay hands the payload to the service,
  which answers on the same stream. The service sees only the exit relay; each relay sees only its two
  neighbours.

No cryptography is written here: sealed boxes are libsodium's (PyNaCl), AES-256-GCM is OpenSSL's
(``cryptography``). The layers were XSalsa20-Poly1305 secret boxes: PyNaCl's ``SecretBox`` took 60–240 µs per
100 KB here (the cipher plus its copies), OpenSSL's AES-GCM (AES-NI) takes about 5 µs, and a 100-participant
CoinShuffle pushes about 120 MB through the layers. Random 96-bit nonces are safe for up to 2^32 cells per key
(NIST SP 800-38D); a circuit key (fresh per circuit and hop) carries far fewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from gridledger.ledger import crypto
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.policy import AUTHORIZED, PolicyTimeline

#: Handler of a node: ``await handler(sender_name, data)``.
Handler = Callable[[str, bytes], Awaitable[None]]

#: Least number of relays on a circuit (PETra: "at least three").
MIN_HOPS = 3
#: Payloads are padded to a multiple of this many bytes before onion encryption (hides exact lengths).
PAD_BYTES = 256
#: Largest frame a TCP transport accepts (bytes).
MAX_FRAME = 16 * 1024 * 1024
CID_BYTES = 16
#: Bytes of a circuit key (AES-256) and of a layer's nonce.
KEY_BYTES, NONCE_BYTES = 32, 12
_DESCRIPTOR_TAG = b"gridledger/relay-descriptor/v1"
_FRAME = struct.Struct(">I")
log = logging.getLogger(__name__)


class TransportError(Exception):
    """A message could not be delivered (unknown node, connection refused, proxy failure)."""


class OnionError(Exception):
    """A circuit could not be built or used (too few relays, no answer in time, closed circuit)."""


# --------------------------------------------------------------------------------------------- transports
class Transport:
    """One node's access to the network: ``send(to, data)``; incoming messages go to the handler."""

    name: str

    async def start(self, handler: Handler) -> None:
        """Begin delivering incoming messages to ``handler``, one at a time per sender, in order."""
        raise NotImplementedError

    async def send(self, to: str, data: bytes) -> None:
        """Deliver ``data`` to node ``to``; raise :class:`TransportError` if it cannot be reached."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class InProcessNetwork:
    """Nodes in one process: every node has an inbox queue served in order by one task."""

    def __init__(self) -> None:
        self.nodes: dict[str, InProcessTransport] = {}

    def endpoint(self, name: str) -> InProcessTransport:
        if name in self.nodes:
            raise TransportError(f"node {name!r} already exists")
        node = InProcessTransport(self, name)
        self.nodes[name] = node
        return node


class InProcessTransport(Transport):
    def __init__(self, network: InProcessNetwork, name: str) -> None:
        self.network = network
        self.name = name
        self.inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def start(self, handler: Handler) -> None:
        async def serve() -> None:
            while True:
                sender, data = await self.inbox.get()
                await _deliver(handler, self.name, sender, data)

        self._task = asyncio.create_task(serve(), name=f"inbox-{self.name}")

    async def send(self, to: str, data: bytes) -> None:
        node = self.network.nodes.get(to)
        if node is None or node._task is None:
            raise TransportError(f"no node {to!r} on this network")
        node.inbox.put_nowait((self.name, bytes(data)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.network.nodes.pop(self.name, None)


class TcpTransport(Transport):
    """A node listening on ``listen`` (host, port); ``peers`` maps node names to (host, port).

    A connection starts with one frame naming the sender; then every frame is ``u32 length | data``. One
    outgoing connection per peer keeps messages in order. With ``socks`` every outgoing connection is opened
    through that SOCKS5 proxy (RFC 1928, no authentication, the peer's host sent as a domain name), so
    ``peers`` may name Tor onion services (``"abc….onion"``) when the proxy is Tor.
    """

    def __init__(
        self,
        name: str,
        listen: tuple[str, int],
        peers: dict[str, tuple[str, int]],
        socks: tuple[str, int] | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.peers = peers
        self.socks = socks
        self._server: asyncio.AbstractServer | None = None
        self._writers: dict[str, asyncio.StreamWriter] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._accepted: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None, "transport not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self, handler: Handler) -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._accepted.add(writer)
            try:
                sender = (await _read_frame(reader)).decode("utf-8", "replace")
                while True:
                    await _deliver(handler, self.name, sender, await _read_frame(reader))
            except (asyncio.IncompleteReadError, ConnectionError, TransportError):
                pass
            finally:
                self._accepted.discard(writer)
                writer.close()

        self._server = await asyncio.start_server(on_connect, *self.listen)

    async def send(self, to: str, data: bytes) -> None:
        lock = self._locks.setdefault(to, asyncio.Lock())
        async with lock:
            writer = self._writers.get(to)
            if writer is None or writer.is_closing():
                writer = await self._connect(to)
                self._writers[to] = writer
            try:
                writer.write(_FRAME.pack(len(data)) + data)
                await writer.drain()
            except ConnectionError as e:
                self._writers.pop(to, None)
                raise TransportError(f"connection to {to!r} lost: {e}") from e

    async def _connect(self, to: str) -> asyncio.StreamWriter:
        if to not in self.peers:
            raise TransportError(f"no address known for node {to!r}")
        host, port = self.peers[to]
        try:
            if self.socks is None:
                _, writer = await asyncio.open_connection(host, port)
            else:
                reader, writer = await asyncio.open_connection(*self.socks)
                await socks5_connect(reader, writer, host, port)
        except OSError as e:
            raise TransportError(f"cannot connect to {to!r} at {host}:{port}: {e}") from e
        hello = self.name.encode()
        writer.write(_FRAME.pack(len(hello)) + hello)
        return writer

    async def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        if self._server is not None:
            self._server.close()
            for w in list(self._accepted):
                w.close()  # the reader sees end of stream and stops
            await self._server.wait_closed()
            await asyncio.sleep(0)


async def _deliver(handler: Handler, node: str, sender: str, data: bytes) -> None:
    """Run the handler on one message; a failing handler is logged and the node keeps serving."""
    try:
        await handler(sender, data)
    except Exception:
        log.exception("node %s: handler failed on a message from %s", node, sender)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
    if length > MAX_FRAME:
        raise TransportError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return await reader.readexactly(length)


async def socks5_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """Ask a SOCKS5 proxy (RFC 1928) to CONNECT to ``host:port``; the host is sent as a domain name."""
    raw_host = host.encode("idna")
    if not 1 <= len(raw_host) <= 255:
        raise TransportError(f"host name {host!r} cannot be sent to a SOCKS5 proxy")
    writer.write(b"\x05\x01\x00")  # version 5, one method: no authentication
    await writer.drain()
    if await reader.readexactly(2) != b"\x05\x00":
        raise TransportError("the SOCKS5 proxy refused the no-authentication method")
    writer.write(b"\x05\x01\x00\x03" + bytes([len(raw_host)]) + raw_host + struct.pack(">H", port))
    await writer.drain()
    version, reply, _, atyp = await reader.readexactly(4)
    if version != 5 or reply != 0:
        raise TransportError(f"the SOCKS5 proxy could not connect to {host}:{port} (reply code {reply})")
    bound = {1: 4, 4: 16}.get(atyp)
    if bound is None:
        bound = (await reader.readexactly(1))[0]
    await reader.readexactly(bound + 2)


# ------------------------------------------------------------------------------------------ relay directory
@dataclass(frozen=True)
class RelayDescriptor:
    """A meter's offer to relay: its node name and X25519 relay key, signed with the meter's ledger key.

    The relay key is a separate X25519 key (not derived from the Ed25519 ledger key), so the meter's signing
    key is used for signatures only; the signature binds the relay key to the meter the DSO authorized.
    """

    meter: str
    node: str
    relay_key: bytes
    signature: bytes

    @staticmethod
    def message(meter: str, node: str, relay_key: bytes) -> bytes:
        w = Writer().name(meter, "meter id").name(node, "relay node").fixed(relay_key, 32, "relay key")
        return crypto.sha256(_DESCRIPTOR_TAG + w.bytes())

    @classmethod
    def create(cls, meter: str, node: str, relay_key: PrivateKey, meter_key: KeyPair) -> RelayDescriptor:
        public = bytes(relay_key.public_key)
        return cls(meter, node, public, meter_key.sign(cls.message(meter, node, public)))


@dataclass
class RelayRegistry:
    """The published relay descriptors of one microgrid, in publication order (see docs/privacy.md)."""

    descriptors: list[RelayDescriptor] = field(default_factory=list)

    def publish(self, descriptor: RelayDescriptor) -> None:
        """Publish (or replace) the descriptor of one meter."""
        self.descriptors = [d for d in self.descriptors if d.meter != descriptor.meter] + [descriptor]


class RelayDirectory:
    """The usable relays: descriptors whose meter is authorized at ``slot`` and whose signature is valid.

    ``rejected`` lists (meter, reason) for every descriptor left out.
    """

    def __init__(self, descriptors: Iterable[RelayDescriptor], policy: PolicyTimeline, slot: int) -> None:
        self.relays: dict[str, RelayDescriptor] = {}
        self.rejected: list[tuple[str, str]] = []
        for d in descriptors:
            try:
                status, pubkey = policy.status(d.meter, slot)
                message = RelayDescriptor.message(d.meter, d.node, d.relay_key)
            except Reject as e:
                self.rejected.append((d.meter, f"malformed descriptor: {e.message}"))
                continue
            if status != AUTHORIZED:
                self.rejected.append((d.meter, f"meter is {status} at slot {slot}"))
            elif not crypto.verify(pubkey, message, d.signature):
                self.rejected.append((d.meter, "descriptor is not signed by the meter's authorized key"))
            elif d.node in self.relays:
                self.rejected.append((d.meter, f"node {d.node!r} is already published by another meter"))
            else:
                self.relays[d.node] = d

    @classmethod
    def from_registry(cls, registry: RelayRegistry, policy: PolicyTimeline, slot: int) -> RelayDirectory:
        return cls(registry.descriptors, policy, slot)

    def path(self, hops: int = MIN_HOPS, rng: secrets.SystemRandom | None = None) -> list[RelayDescriptor]:
        """``hops`` distinct relays chosen uniformly at random."""
        if hops < MIN_HOPS:
            raise OnionError(f"a circuit needs at least {MIN_HOPS} relays, asked for {hops}")
        if len(self.relays) < hops:
            raise OnionError(f"{hops} relays needed, the directory has {len(self.relays)}")
        relays = sorted(self.relays.values(), key=lambda d: d.node)
        return (rng or secrets.SystemRandom()).sample(relays, hops)


# ----------------------------------------------------------------------------------------------- onion cells
CREATE, DATA, BACK, EXIT, REPLY, DESTROY = 1, 2, 3, 4, 5, 6
_TO_RELAY, _TO_SERVICE = 0, 1
_ACK, _PAYLOAD = 0, 1


def _cell(kind: int, cid: bytes, body: bytes = b"") -> bytes:
    return bytes([kind]) + cid + body


def pad(data: bytes) -> bytes:
    """``u32 length | data | zeros`` up to a multiple of :data:`PAD_BYTES`."""
    framed = _FRAME.pack(len(data)) + data
    return framed + bytes(-len(framed) % PAD_BYTES)


def unpad(data: bytes) -> bytes:
    if len(data) < _FRAME.size:
        raise OnionError("padded payload too short")
    (length,) = _FRAME.unpack_from(data)
    if _FRAME.size + length > len(data):
        raise OnionError("padded payload shorter than its length field")
    return data[_FRAME.size : _FRAME.size + length]


class Layer:
    """One hop's layer of a circuit: AES-256-GCM under the hop's circuit key, ``nonce 12 | ciphertext | tag 16``."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, data: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, None)

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext; raises ``CryptoError`` if ``data`` was not sealed under this key or was altered."""
        if len(data) < NONCE_BYTES:
            raise CryptoError("onion layer too short")
        view = memoryview(data)
        try:
            return self._aead.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], None)
        except InvalidTag:
            raise CryptoError("onion layer failed authentication") from None


@dataclass
class _Hop:
    """A relay's entry for one circuit: where it came from, where it goes, and its key."""

    prev: str
    cid_in: bytes
    next: str
    cid_out: bytes
    box: Layer
    exit: bool


@dataclass
class Stream:
    """A service's end of one circuit: replies go back through the exit relay."""

    node: OnionNode
    exit_relay: str
    stream_id: bytes

    async def reply(self, data: bytes) -> None:
        await self.node.transport.send(self.exit_relay, _cell(REPLY, self.stream_id, data))


class Circuit:
    """A client's circuit to one service: :meth:`send` messages, :meth:`recv` the replies in order."""

    def __init__(self, node: OnionNode, first: str, cid: bytes, boxes: list[Layer]) -> None:
        self.node = node
        self.first = first
        self.cid = cid
        self.boxes = boxes
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False
        self._lock = asyncio.Lock()

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise OnionError("circuit is closed")
        payload = pad(data)
        for box in reversed(self.boxes):
            payload = box.encrypt(payload)
        await self.node.transport.send(self.first, _cell(DATA, self.cid, payload))

    async def recv(self, timeout: float | None = None) -> bytes:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            raise OnionError(f"no answer through the circuit within {timeout} s") from None

    async def request(self, data: bytes, timeout: float | None = None) -> bytes:
        """Send one message and wait for the next reply (one request at a time per circuit)."""
        async with self._lock:
            await self.send(data)
            return await self.recv(timeout)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node._circuits.pop((self.first, self.cid), None)
            with contextlib.suppress(TransportError):
                await self.node.transport.send(self.first, _cell(DESTROY, self.cid))


class OnionNode:
    """The onion layer of one node on one transport: relay, client and service.

    Parameters
    ----------
    transport : the node's transport (not started yet; :meth:`start` starts it).
    relay_key : the node's X25519 relay key if it relays (a meter), else ``None``.
    directory : the relays to build circuits through (needed by clients only).
    """

    def __init__(
        self,
        transport: Transport,
        relay_key: PrivateKey | None = None,
        directory: RelayDirectory | None = None,
    ) -> None:
        self.transport = transport
        self.name = transport.name
        self.directory = directory
        self._unseal = SealedBox(relay_key) if relay_key is not None else None
        self._forward: dict[tuple[str, bytes], _Hop] = {}
        self._backward: dict[tuple[str, bytes], _Hop] = {}
        self._circuits: dict[tuple[str, bytes], Circuit] = {}
        self._service: Callable[[Stream, bytes], Awaitable[None]] | None = None
        self.dropped = 0

    async def start(self) -> OnionNode:
        await self.transport.start(self._on_message)
        return self

    async def close(self) -> None:
        await self.transport.close()

    def serve(self, handler: Callable[[Stream, bytes], Awaitable[None]]) -> None:
        """Make this node a service: ``await handler(stream, payload)`` for every message that exits to it."""
        self._service = handler

    # --------------------------------------------------------------------------------- client
    async def open_circuit(
        self, service: str, hops: int = MIN_HOPS, timeout: float = 10.0, path: Sequence[RelayDescriptor] = ()
    ) -> Circuit:
        """Build a circuit to ``service`` through ``hops`` random relays (or the given ``path``)."""
        if self.directory is None and not path:
            raise OnionError("this node has no relay directory to build circuits from")
        relays = list(path) or self.directory.path(hops)
        if len(relays) < MIN_HOPS:
            raise OnionError(f"a circuit needs at least {MIN_HOPS} relays, got {len(relays)}")
        keys = [secrets.token_bytes(KEY_BYTES) for _ in relays]
        cids = [secrets.token_bytes(CID_BYTES) for _ in relays]
        stream_id = secrets.token_bytes(CID_BYTES)
        onion = None
        for i in range(len(relays) - 1, -1, -1):
            w = Writer().fixed(keys[i], KEY_BYTES, "circuit key")
            if i == len(relays) - 1:
                w.u8(_TO_SERVICE).blob(service.encode(), "service").fixed(stream_id, CID_BYTES, "stream id")
            else:
                w.u8(_TO_RELAY).blob(relays[i + 1].node.encode(), "next relay")
                w.fixed(cids[i + 1], CID_BYTES, "next circuit id").blob(onion, "inner onion")
            onion = SealedBox(PublicKey(relays[i].relay_key)).encrypt(w.bytes())
        circuit = Circuit(self, relays[0].node, cids[0], [Layer(k) for k in keys])
        self._circuits[(circuit.first, circuit.cid)] = circuit
        await self.transport.send(circuit.first, _cell(CREATE, circuit.cid, onion))
        try:
            await asyncio.wait_for(asyncio.shield(circuit.ready), timeout)
        except TimeoutError:
            self._circuits.pop((circuit.first, circuit.cid), None)
            route = [r.node for r in relays]
            raise OnionError(f"circuit to {service!r} through {route} not built in {timeout} s") from None
        return circuit

    def _on_back_to_client(self, circuit: Circuit, body: bytes) -> None:
        try:
            for box in circuit.boxes:
                body = box.decrypt(body)
        except CryptoError:
            self.dropped += 1
            return
        if body[:1] == bytes([_ACK]):
            if not circuit.ready.done():
                circuit.ready.set_result(True)
        else:
            circuit.inbox.put_nowait(unpad(body[1:]))

    # --------------------------------------------------------------------------------- relay
    async def _on_create(self, sender: str, cid: bytes, onion: bytes) -> None:
        if self._unseal is None:
            raise OnionError("not a relay")
        r = Reader(self._unseal.decrypt(onion))
        box = Layer(r.take(KEY_BYTES, "circuit key"))
        kind = r.u8("next hop kind")
        nxt = r.blob("next hop").decode()
        cid_out = r.take(CID_BYTES, "next circuit id")
        inner = r.blob("inner onion") if kind == _TO_RELAY else None
        r.end("onion layer")
        hop = _Hop(sender, cid, nxt, cid_out, box, kind == _TO_SERVICE)
        if (sender, cid) in self._forward or (nxt, cid_out) in self._backward:
            raise OnionError("circuit id already in use")
        self._forward[(sender, cid)] = hop
        self._backward[(nxt, cid_out)] = hop
        if hop.exit:
            await self.transport.send(sender, _cell(BACK, cid, box.encrypt(bytes([_ACK]))))
        else:
            await self.transport.send(nxt, _cell(CREATE, cid_out, inner))

    async def _on_data(self, hop: _Hop, body: bytes) -> None:
        plain = hop.box.decrypt(body)
        if hop.exit:
            await self.transport.send(hop.next, _cell(EXIT, hop.cid_out, unpad(plain)))
        else:
            await self.transport.send(hop.next, _cell(DATA, hop.cid_out, plain))

    async def _on_back(self, hop: _Hop, body: bytes, from_service: bool) -> None:
        if from_service:
            body = bytes([_PAYLOAD]) + pad(body)
        await self.transport.send(hop.prev, _cell(BACK, hop.cid_in, hop.box.encrypt(body)))

    async def _on_destroy(self, sender: str, cid: bytes) -> None:
        hop = self._forward.pop((sender, cid), None)
        if hop is None:
            return
        self._backward.pop((hop.next, hop.cid_out), None)
        if not hop.exit:
            await self.transport.send(hop.next, _cell(DESTROY, hop.cid_out))

    # --------------------------------------------------------------------------------- dispatch
    async def _on_message(self, sender: str, data: bytes) -> None:
        """Handle one cell; a malformed or undeliverable cell is dropped (counted in ``dropped``)."""
        if len(data) < 1 + CID_BYTES:
            self.dropped += 1
            return
        kind, cid, body = data[0], data[1 : 1 + CID_BYTES], data[1 + CID_BYTES :]
        try:
            if kind == CREATE:
                await self._on_create(sender, cid, body)
            elif kind == DATA and (sender, cid) in self._forward:
                await self._on_data(self._forward[(sender, cid)], body)
            elif kind == BACK and (sender, cid) in self._circuits:
                self._on_back_to_client(self._circuits[(sender, cid)], body)
            elif kind == BACK and (sender, cid) in self._backward:
                await self._on_back(self._backward[(sender, cid)], body, from_service=False)
            elif kind == REPLY and (sender, cid) in self._backward:
                await self._on_back(self._backward[(sender, cid)], body, from_service=True)
            elif kind == EXIT and self._service is not None:
                await self._service(Stream(self, sender, cid), body)
            elif kind == DESTROY:
                await self._on_destroy(sender, cid)
            else:
                self.dropped += 1
        except (CryptoError, Reject, OnionError, TransportError, UnicodeDecodeError):
            self.dropped += 1
