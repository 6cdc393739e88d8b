"""Onion routing: the relay directory, circuits, what each hop sees, padding, TCP and SOCKS5 transports."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.policy import PolicyTimeline
from gridledger.petra.onion import (
    DATA,
    NONCE_BYTES,
    PAD_BYTES,
    InProcessNetwork,
    Layer,
    OnionError,
    OnionNode,
    RelayDescriptor,
    RelayDirectory,
    TcpTransport,
    TransportError,
    pad,
    unpad,
)

from .children import share_book, spawn, tcp_nodes
from .conftest import onion_network, run


# ------------------------------------------------------------------------------------------- directory
def _policy(*authorized: tuple[str, KeyPair], ban: tuple[str, ...] = ()) -> PolicyTimeline:
    p = PolicyTimeline()
    p.add(DsoPolicy(1, 0, authorize=tuple((m, k.public) for m, k in authorized)))
    if ban:
        p.add(DsoPolicy(2, 5, ban=ban))
    return p


def test_directory_keeps_only_relays_of_authorized_meters_with_valid_signatures():
    a, b, c = (KeyPair.from_secret(f"dir-{x}") for x in "abc")
    policy = _policy(("MA", a), ("MB", b), ("MC", c), ban=("MC",))
    good = RelayDescriptor.create("MA", "relay-a", PrivateKey.generate(), a)
    forged = RelayDescriptor.create("MB", "relay-b", PrivateKey.generate(), KeyPair.from_secret("intruder"))
    banned = RelayDescriptor.create("MC", "relay-c", PrivateKey.generate(), c)
    unknown = RelayDescriptor.create("MX", "relay-x", PrivateKey.generate(), KeyPair.from_secret("x"))
    swapped = RelayDescriptor("MA", "relay-a2", bytes(PrivateKey.generate().public_key), good.signature)
    same_node = RelayDescriptor.create("MB", "relay-a", PrivateKey.generate(), b)
    bad_name = RelayDescriptor("MA", "no spaces allowed", good.relay_key, good.signature)
    d = RelayDirectory([good, forged, banned, unknown, swapped, same_node, bad_name], policy, slot=5)
    assert list(d.relays) == ["relay-a"]
    assert d.rejected == [
        ("MB", "descriptor is not signed by the meter's authorized key"),
        ("MC", "meter is banned at slot 5"),
        ("MX", "meter is unknown at slot 5"),
        ("MA", "descriptor is not signed by the meter's authorized key"),
        ("MB", "node 'relay-a' is already published by another meter"),
        (
            "MA",
            "malformed descriptor: relay node 'no spaces allowed' may only use letters, digits and _ . : -",
        ),
    ]
    # before the ban took effect the banned meter's relay was usable
    assert "relay-c" in RelayDirectory([banned], policy, slot=4).relays


def test_paths_need_three_distinct_relays():
    keys = {f"M{i}": KeyPair.from_secret(f"path-{i}") for i in range(4)}
    policy = _policy(*keys.items())
    descs = [RelayDescriptor.create(m, f"r{m}", PrivateKey.generate(), k) for m, k in keys.items()]
    d = RelayDirectory(descs, policy, 0)
    for _ in range(20):
        path = d.path()
        assert len(path) == 3 and len({p.node for p in path}) == 3
    with pytest.raises(OnionError, match="at least 3"):
        d.path(2)
    with pytest.raises(OnionError, match="5 relays needed"):
        d.path(5)


@given(st.binary(max_size=2000))
def test_padding_round_trip_hides_exact_length(data):
    padded = pad(data)
    assert len(padded) % PAD_BYTES == 0 and unpad(padded) == data


def test_unpad_rejects_inconsistent_lengths():
    with pytest.raises(OnionError):
        unpad(b"\x00")
    with pytest.raises(OnionError):
        unpad(struct.pack(">I", 99) + b"short")


# -------------------------------------------------------------------------------------------- circuits
class Tap:
    """Records every message a node receives: (sender, bytes). Apply before the node starts."""

    def __init__(self, node: OnionNode) -> None:
        self.seen: list[tuple[str, bytes]] = []
        inner = node._on_message

        async def handler(sender: str, data: bytes) -> None:
            self.seen.append((sender, data))
            await inner(sender, data)

        node._on_message = handler


def test_circuit_round_trip_and_what_each_hop_learns():
    async def scenario():
        taps = {}
        onion = await onion_network(5, tap=lambda n: taps.setdefault(n.name, Tap(n)))
        service = OnionNode(onion.network.endpoint("store"))
        service_tap = Tap(service)
        await service.start()
        got = []

        async def echo(stream, data):
            got.append((stream.exit_relay, data))
            await stream.reply(b"ack:" + data)

        service.serve(echo)
        client = await OnionNode(onion.network.endpoint("alice"), directory=onion.directory).start()
        path = onion.directory.path()
        circuit = await client.open_circuit("store", path=path)
        secret = b"the offer of a prosumer " * 3
        assert await circuit.request(secret, 5) == b"ack:" + secret
        first, middle, exit_ = (taps[p.node] for p in path)
        # the service sees only the exit relay; no hop but the first sees the client
        assert {s for s, _ in service_tap.seen} == {path[2].node}
        assert got == [(path[2].node, secret)]
        assert {s for s, _ in first.seen} <= {"alice", path[1].node}
        assert {s for s, _ in middle.seen} <= {path[0].node, path[2].node}
        assert {s for s, _ in exit_.seen} <= {path[1].node, "store"}
        # layered encryption: the payload is readable only between the exit relay and the service
        for tap in (first, middle):
            assert all(secret not in data for _, data in tap.seen)
        await circuit.close()
        for n in [client, service, *onion.relays]:
            await n.close()

    run(scenario())


def test_payload_lengths_are_padded_on_the_wire():
    async def scenario():
        taps = []
        onion = await onion_network(3, tap=lambda n: taps.append(Tap(n)))
        service = await OnionNode(onion.network.endpoint("svc")).start()

        async def echo(stream, data):
            await stream.reply(data)

        service.serve(echo)
        client = await OnionNode(onion.network.endpoint("bob"), directory=onion.directory).start()
        circuit = await client.open_circuit("svc")
        sizes = []
        for payload in (b"x", b"y" * 150):
            before = [len(t.seen) for t in taps]
            await circuit.request(payload, 5)
            # every cell between relays (all but the exit's plaintext leg to the service) has the same size
            cells = [d for t, k in zip(taps, before, strict=True) for who, d in t.seen[k:] if who != "svc"]
            sizes.append(sorted(len(d) for d in cells))
        assert len(sizes[0]) == 5 and sizes[0] == sizes[1]
        for n in [client, service, *onion.relays]:
            await n.close()

    run(scenario())


def test_a_layer_authenticates_and_never_repeats_a_nonce():
    key, other = bytes(range(32)), bytes(32)
    layer = Layer(key)
    sealed = [layer.encrypt(b"cell body") for _ in range(50)]
    assert len({c[:NONCE_BYTES] for c in sealed}) == 50  # a fresh random nonce per encryption
    assert all(Layer(key).decrypt(c) == b"cell body" for c in sealed)
    c = sealed[0]
    for bad in (c[:-1], c[:5], c[:NONCE_BYTES] + bytes([c[NONCE_BYTES] ^ 1]) + c[NONCE_BYTES + 1 :]):
        with pytest.raises(CryptoError):
            layer.decrypt(bad)
    with pytest.raises(CryptoError):
        Layer(other).decrypt(c)


def test_a_tampered_cell_on_a_live_circuit_is_dropped():
    async def scenario():
        onion = await onion_network(3)
        service = await OnionNode(onion.network.endpoint("svc")).start()
        seen = []

        async def echo(stream, data):
            seen.append(data)
            await stream.reply(data)

        service.serve(echo)
        client = await OnionNode(onion.network.endpoint("carol"), directory=onion.directory).start()
        circuit = await client.open_circuit("svc")
        first = next(r for r in onion.relays if r.name == circuit.first)
        body = pad(b"forged")
        for box in reversed(circuit.boxes):
            body = box.encrypt(body)
        tampered = body[:-1] + bytes([body[-1] ^ 1])  # one bit flipped in transit
        await client.transport.send(circuit.first, bytes([DATA]) + circuit.cid + tampered)
        await asyncio.sleep(0.05)
        assert first.dropped == 1 and not seen
        assert await circuit.request(b"still fine", 5) == b"still fine"
        for n in [client, service, *onion.relays]:
            await n.close()

    run(scenario())


def test_garbage_cells_are_dropped_and_the_relay_keeps_working():
    async def scenario():
        onion = await onion_network(3)
        service = await OnionNode(onion.network.endpoint("svc")).start()

        async def echo(stream, data):
            await stream.reply(data)

        service.serve(echo)
        relay = onion.relays[0]
        attacker = onion.network.endpoint("mallory")
        await attacker.start(lambda s, d: asyncio.sleep(0))
        for cell in (
            b"",
            b"\x01",
            bytes([1]) + bytes(16) + b"not a sealed box",
            bytes([2]) + bytes(16) + b"x",
            bytes([9]) + bytes(40),
            bytes([3]) + bytes(16) + b"y",
        ):
            await attacker.send(relay.name, cell)
        await asyncio.sleep(0.05)
        assert relay.dropped == 6
        client = await OnionNode(onion.network.endpoint("carol"), directory=onion.directory).start()
        circuit = await client.open_circuit("svc")
        assert await circuit.request(b"still fine", 5) == b"still fine"
        for n in [client, service, *onion.relays]:
            await n.close()
        await attacker.close()

    run(scenario())


def test_unreachable_service_and_too_few_relays():
    async def scenario():
        onion = await onion_network(3)
        client = await OnionNode(onion.network.endpoint("dave"), directory=onion.directory).start()
        circuit = await client.open_circuit("nobody")  # the exit cannot deliver: the request times out
        with pytest.raises(OnionError, match="no answer"):
            await circuit.request(b"hello", 0.2)
        with pytest.raises(OnionError, match="at least 3"):
            await client.open_circuit("nobody", path=onion.directory.path()[:2])
        lonely = await OnionNode(onion.network.endpoint("erin")).start()
        with pytest.raises(OnionError, match="no relay directory"):
            await lonely.open_circuit("svc")
        with pytest.raises(TransportError):
            await client.transport.send("ghost", b"x")
        for n in [client, lonely, *onion.relays]:
            await n.close()

    run(scenario())


def test_in_process_names_are_unique():
    net = InProcessNetwork()
    net.endpoint("a")
    with pytest.raises(TransportError):
        net.endpoint("a")


# ------------------------------------------------------------------------------------------------ TCP
def test_circuit_across_processes_over_loopback_tcp():
    keys = {f"M{i}": KeyPair.from_secret(f"tcp-{i}") for i in range(3)}
    relay_keys = {m: PrivateKey.generate() for m in keys}
    descs = [RelayDescriptor.create(m, f"relay-{m}", relay_keys[m], k) for m, k in keys.items()]
    directory = RelayDirectory(descs, _policy(*keys.items()), 0)
    ctx = mp.get_context("spawn")
    ports, peers, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = spawn("relays", [(f"relay-{m}", bytes(relay_keys[m])) for m in keys], ports, peers, stop)
    try:

        async def scenario():
            book: dict = {}
            store, client = await tcp_nodes([("store", None, None), ("client", None, directory)], book)
            await share_book(book, ports, peers)
            seen = []

            async def echo(stream, data):
                seen.append(stream.exit_relay)
                await stream.reply(data[::-1])

            store.serve(echo)
            circuit = await client.open_circuit("store")
            assert await circuit.request(b"over tcp", 10) == b"pct revo"
            assert seen and seen[0].startswith("relay-")
            await circuit.close()
            await client.close()
            await store.close()

        run(scenario())
    finally:
        stop.set()
        proc.join(10)
    assert proc.exitcode == 0


async def _socks5_proxy(log: list[tuple[str, int]]) -> asyncio.AbstractServer:
    """A minimal SOCKS5 proxy (RFC 1928, no authentication, CONNECT by domain name) for the test."""

    async def pipe(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    async def handle(reader, writer):
        assert await reader.readexactly(3) == b"\x05\x01\x00"
        writer.write(b"\x05\x00")
        head = await reader.readexactly(5)
        assert head[:4] == b"\x05\x01\x00\x03"
        host = (await reader.readexactly(head[4])).decode()
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        log.append((host, port))
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")
        await writer.drain()
        asyncio.ensure_future(pipe(reader, w2))
        asyncio.ensure_future(pipe(r2, writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_tcp_transport_through_a_socks5_proxy():
    async def scenario():
        log: list[tuple[str, int]] = []
        proxy = await _socks5_proxy(log)
        proxy_port = proxy.sockets[0].getsockname()[1]
        got = asyncio.Queue()
        receiver = TcpTransport("hidden", ("127.0.0.1", 0), {})

        async def on(sender, data):
            got.put_nowait((sender, data))

        await receiver.start(on)
        peers = {"hidden": ("localhost", receiver.port)}
        sender = TcpTransport("s", ("127.0.0.1", 0), peers, socks=("127.0.0.1", proxy_port))
        await sender.start(on)
        await sender.send("hidden", b"via the proxy")
        assert await asyncio.wait_for(got.get(), 5) == ("s", b"via the proxy")
        assert log == [("localhost", receiver.port)]
        with pytest.raises(TransportError, match="no address"):
            await sender.send("elsewhere", b"x")
        for t in (sender, receiver):
            await t.close()
        proxy.close()

    run(scenario())


def test_socks5_proxy_refusal_is_a_transport_error():
    async def scenario():
        async def refuse(reader, writer):
            await reader.readexactly(3)
            writer.write(b"\x05\xff")
            await writer.drain()

        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        t = TcpTransport(
            "s",
            ("127.0.0.1", 0),
            {"x": ("example.onion", 80)},
            socks=("127.0.0.1", server.sockets[0].getsockname()[1]),
        )
        with pytest.raises(TransportError, match="refused"):
            await t.send("x", b"data")
        server.close()

    run(scenario())
