"""Code that runs in child processes of the cross-process tests (started by path, so any import mode works).

The tests start a child with :func:`spawn`, which runs this file with ``TARGET`` (a function name here) and
``ARGS`` set; the parent imports :func:`tcp_nodes` and :func:`spawn` from here.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import runpy
from pathlib import Path

from nacl.public import PrivateKey

from gridledger.ledger.assets import EPA
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.policy import PolicyTimeline
from gridledger.petra.coinshuffle import Participant, mix_coin
from gridledger.petra.onion import OnionNode, RelayDescriptor, RelayDirectory, TcpTransport

UNIT = EPA(500, 1, 2)


def spawn(target: str, *args) -> mp.Process:
    """Start a fresh Python process running ``target(*args)`` from this file."""
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=runpy.run_path,
        args=(str(Path(__file__)),),
        kwargs={"init_globals": {"TARGET": target, "ARGS": args}, "run_name": "__child__"},
    )
    proc.start()
    return proc


def new_address() -> bytes:
    return KeyPair.generate().address


async def tcp_nodes(specs, book: dict, ports=None, peers=None) -> list[OnionNode]:
    """Start loopback TCP onion nodes ``(name, relay key or None, directory or None)`` on free ports.

    Every node shares the address ``book``. In a child process pass the ``ports`` queue (the child reports
    its nodes' addresses) and the ``peers`` queue (it receives the complete book), so no port is ever
    chosen before it is bound.
    """
    nodes = []
    for name, key, directory in specs:
        node = OnionNode(TcpTransport(name, ("127.0.0.1", 0), book), key, directory)
        nodes.append(await node.start())
    mine = {n.name: ("127.0.0.1", n.transport.port) for n in nodes}
    book.update(mine)
    if ports is not None:
        ports.put(mine)
        book.update(await asyncio.get_running_loop().run_in_executor(None, peers.get, True, 60))
        ports.put("ready")
    return nodes


async def share_book(book: dict, ports, peers) -> None:
    """Parent side of :func:`tcp_nodes`: take the child's addresses, send the whole book, await ready."""
    loop = asyncio.get_running_loop()
    book.update(await loop.run_in_executor(None, ports.get, True, 60))
    peers.put(book)
    assert await loop.run_in_executor(None, ports.get, True, 60) == "ready"


def relays(secrets_: list[tuple[str, bytes]], ports, peers, stop) -> None:
    """Host relays on loopback TCP until ``stop`` is set."""

    async def main():
        nodes = await tcp_nodes([(n, PrivateKey(k), None) for n, k in secrets_], {}, ports, peers)
        while not stop.is_set():
            await asyncio.sleep(0.02)
        for n in nodes:
            await n.close()

    asyncio.run(main())


def mixers(spec: dict, ports, peers, results) -> None:
    """Host some CoinShuffle participants, each with its own TCP node, and report their joint transfers."""

    async def main():
        policy = PolicyTimeline()
        policy.add(decode_transaction(spec["policy"]))
        directory = RelayDirectory([RelayDescriptor(*d) for d in spec["relays"]], policy, 0)
        nodes = await tcp_nodes(
            [(name, None, directory) for name, _, _ in spec["participants"]], {}, ports, peers
        )
        jobs = [
            mix_coin(
                node, "mixboard", Participant(KeyPair(seed), coin, spec["chain_id"], new_address), UNIT, 60
            )
            for node, (_, seed, coin) in zip(nodes, spec["participants"], strict=True)
        ]
        outcomes = await asyncio.gather(*jobs)
        results.put([o.transfer.txid for o in outcomes])
        for node in nodes:
            await node.close()

    asyncio.run(main())


if __name__ == "__child__":
    globals()[TARGET](*ARGS)  # noqa: F821 - both are set by spawn()
