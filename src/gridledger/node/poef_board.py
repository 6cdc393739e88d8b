"""The shared board of a PoEf round: proposals, sealed disclosures and the committee's verdicts, beside the orderer.

A round for height *h* (Olivares-Rojas et al. 2023, §3.2; the roles are :mod:`gridledger.consensus.poef`) leaves
three kinds of records where every node of the chain can read them:

* ``proposals/<h>/<round>`` — the leading coordinator's uncertified block, created if absent: one block per
  (height, round), so a coordinator that takes over can only put a different block in a *new* round;
* ``disclosures/<h>/<block hash>/<member key>`` — the per-reading keys a committee member needs, sealed to that
  member's key (:meth:`Disclosure.seal`); written before the proposal, so a member that sees a proposal finds them;
* ``votes/<h>/<block hash>/<member key>`` — each member's verdict on that block: its vote, or the ``Reject`` that
  says why not (kept for diagnosis; a later vote of the same member replaces it).

With etcd (:class:`EtcdPoefOrderer`) the records live under the chain's prefix next to ``leader``, ``mempool/`` and
``blocks/`` (heights as 20 digits, rounds as 6, hashes and keys in hex); :class:`InProcessPoefOrderer` keeps them
in memory for single-process tests. The leader clears a height's records once its certified block is final.
"""

from __future__ import annotations

import json
from abc import abstractmethod

from gridledger.ledger.block import Vote
from gridledger.ledger.crypto import PUBKEY_BYTES, SIGNATURE_BYTES
from gridledger.ledger.errors import Reject
from gridledger.node.ordering import EtcdOrderer, InProcessOrderer, Orderer

Verdict = Vote | Reject
_VOTE, _REJECT = b"\x01", b"\x00"


def encode_verdict(verdict: Verdict) -> bytes:
    """A vote as ``0x01 ‖ pubkey 32 ‖ signature 64``; a reject as ``0x00 ‖ JSON {code, message, tx_index}``."""
    if isinstance(verdict, Vote):
        return _VOTE + verdict.pubkey + verdict.signature
    body = {"code": verdict.code, "message": verdict.message, "tx_index": verdict.tx_index}
    return _REJECT + json.dumps(body).encode()


def decode_verdict(raw: bytes) -> Verdict:
    """The inverse of :func:`encode_verdict`; ``Reject('bad-poef-verdict')`` for a malformed record."""
    if raw[:1] == _VOTE and len(raw) == 1 + PUBKEY_BYTES + SIGNATURE_BYTES:
        return Vote(raw[1 : 1 + PUBKEY_BYTES], raw[1 + PUBKEY_BYTES :])
    if raw[:1] == _REJECT:
        try:
            body = json.loads(raw[1:])
            index = body["tx_index"]
            if not isinstance(body["code"], str) or not (index is None or type(index) is int):
                raise TypeError
            return Reject(body["code"], str(body["message"]), tx_index=index)
        except (ValueError, KeyError, TypeError):
            pass
    raise Reject("bad-poef-verdict", f"malformed verdict record of {len(raw)} bytes")


class PoefOrderer(Orderer):
    """An orderer that also carries PoEf rounds (see the module docstring for the records)."""

    @abstractmethod
    def propose(self, height: int, round_no: int, raw_block: bytes) -> bool:
        """Post a proposal unless round ``round_no`` of ``height`` has one; True if this one was posted."""

    @abstractmethod
    def proposals(self, height: int) -> list[tuple[int, bytes]]:
        """(round, raw block) of every proposal at ``height``, by increasing round."""

    @abstractmethod
    def disclose(self, height: int, block_hash: bytes, member: bytes, sealed: bytes) -> None:
        """Post the sealed disclosure of ``block_hash`` for committee member ``member`` (a public key)."""

    @abstractmethod
    def disclosure(self, height: int, block_hash: bytes, member: bytes) -> bytes | None:
        """The sealed disclosure of ``block_hash`` for ``member``, if posted."""

    @abstractmethod
    def _put_verdict(self, height: int, block_hash: bytes, member: bytes, raw: bytes) -> None: ...

    @abstractmethod
    def _verdicts(self, height: int) -> list[tuple[bytes, bytes, bytes]]:
        """(block hash, member key, raw verdict) of every verdict at ``height``."""

    @abstractmethod
    def clear(self, height: int) -> None:
        """Forget every proposal, disclosure and verdict of ``height`` (its block is final)."""

    def vote(self, height: int, block_hash: bytes, member: bytes, verdict: Verdict) -> None:
        """Post ``member``'s verdict on ``block_hash``."""
        self._put_verdict(height, block_hash, member, encode_verdict(verdict))

    def verdicts(self, height: int) -> dict[bytes, dict[bytes, Verdict]]:
        """Block hash → member key → verdict, for every block voted on at ``height``; malformed records skipped."""
        out: dict[bytes, dict[bytes, Verdict]] = {}
        for block_hash, member, raw in self._verdicts(height):
            try:
                out.setdefault(block_hash, {})[member] = decode_verdict(raw)
            except Reject:
                continue
        return out


class InProcessPoefOrderer(InProcessOrderer, PoefOrderer):
    """PoEf rounds in one process's memory (thread-safe)."""

    def __init__(self) -> None:
        super().__init__()
        self._proposals: dict[int, dict[int, bytes]] = {}
        self._disclosures: dict[tuple[int, bytes, bytes], bytes] = {}
        self._verdict_rows: dict[tuple[int, bytes, bytes], bytes] = {}

    def propose(self, height: int, round_no: int, raw_block: bytes) -> bool:
        with self._lock:
            rounds = self._proposals.setdefault(height, {})
            if round_no in rounds:
                return False
            rounds[round_no] = raw_block
            return True

    def proposals(self, height: int) -> list[tuple[int, bytes]]:
        with self._lock:
            return sorted(self._proposals.get(height, {}).items())

    def disclose(self, height: int, block_hash: bytes, member: bytes, sealed: bytes) -> None:
        with self._lock:
            self._disclosures[height, block_hash, member] = sealed

    def disclosure(self, height: int, block_hash: bytes, member: bytes) -> bytes | None:
        with self._lock:
            return self._disclosures.get((height, block_hash, member))

    def _put_verdict(self, height: int, block_hash: bytes, member: bytes, raw: bytes) -> None:
        with self._lock:
            self._verdict_rows[height, block_hash, member] = raw

    def _verdicts(self, height: int) -> list[tuple[bytes, bytes, bytes]]:
        with self._lock:
            return [(b, m, raw) for (h, b, m), raw in self._verdict_rows.items() if h == height]

    def clear(self, height: int) -> None:
        with self._lock:
            self._proposals.pop(height, None)
            for table in (self._disclosures, self._verdict_rows):
                for key in [k for k in table if k[0] == height]:
                    del table[key]


class EtcdPoefOrderer(EtcdOrderer, PoefOrderer):
    """PoEf rounds on the etcd cluster of the chain's orderer."""

    def _height(self, kind: str, height: int) -> str:
        return self._key(f"{kind}/{height:020d}/")

    def propose(self, height: int, round_no: int, raw_block: bytes) -> bool:
        key = self._height("proposals", height) + f"{round_no:06d}"
        return bool(self._call(lambda c: c.create(key, raw_block)))

    def proposals(self, height: int) -> list[tuple[int, bytes]]:
        prefix = self._height("proposals", height)
        rows = self._call(lambda c: c.get_prefix(prefix, sort_order="ascend", sort_target="key"))
        return [(int(meta["key"].decode()[len(prefix) :]), value) for value, meta in rows]

    def disclose(self, height: int, block_hash: bytes, member: bytes, sealed: bytes) -> None:
        key = self._height("disclosures", height) + f"{block_hash.hex()}/{member.hex()}"
        self._call(lambda c: c.put(key, sealed))

    def disclosure(self, height: int, block_hash: bytes, member: bytes) -> bytes | None:
        key = self._height("disclosures", height) + f"{block_hash.hex()}/{member.hex()}"
        values = self._call(lambda c: c.get(key))
        return values[0] if values else None

    def _put_verdict(self, height: int, block_hash: bytes, member: bytes, raw: bytes) -> None:
        key = self._height("votes", height) + f"{block_hash.hex()}/{member.hex()}"
        self._call(lambda c: c.put(key, raw))

    def _verdicts(self, height: int) -> list[tuple[bytes, bytes, bytes]]:
        prefix = self._height("votes", height)
        out = []
        for value, meta in self._call(lambda c: c.get_prefix(prefix)):
            block_hash, _, member = meta["key"].decode()[len(prefix) :].partition("/")
            try:
                out.append((bytes.fromhex(block_hash), bytes.fromhex(member), value))
            except ValueError:  # not a key this module wrote
                continue
        return out

    def clear(self, height: int) -> None:
        for kind in ("proposals", "disclosures", "votes"):
            prefix = self._height(kind, height)
            self._call(lambda c, prefix=prefix: c.delete_prefix(prefix))
