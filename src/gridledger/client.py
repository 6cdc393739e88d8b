"""The Python client of a gridledger node's signed API (layer 3, beside ``node``).

>>> from gridledger.client import NodeClient, load_key     # doctest: +SKIP
>>> with NodeClient("http://127.0.0.1:8101", "operator", load_key("keys/operator.seed")) as node:
...     node.status()["height"]
...     txid = node.send(tx)                                # ApiError(code="bad-policy-stale", ...) if refused
...     node.wait(txid)                                     # {"status": "committed", "height": 12}

Every call is signed as one registered node (``X-Node-Id``, ``X-Timestamp``, ``X-Nonce``, ``X-Signature``); a
refusal raises ``ApiError`` (HTTP status, reject code, message), a node that does not answer ``NodeUnreachable``.
``load_key`` refuses a key file that group or others may read. The implementation is
:mod:`gridledger.node.client` (the nodes use it to catch up from their peers).
"""

from gridledger.node.client import ApiError, KeyFileError, NodeClient, NodeUnreachable, load_key

__all__ = ["ApiError", "KeyFileError", "NodeClient", "NodeUnreachable", "load_key"]
