"""Skips for tests that need a real server binary installed here (``./dev services`` installs all three as root).

Call one at the start of a test or fixture: ``requires.etcd()``. Each skips with what to install when the binary
is missing; CI installs them, so there these never skip.
"""

from __future__ import annotations

import pytest

from gridledger.node.etcd import EtcdUnavailable, etcd_binary
from gridledger.store.pgserver import find_bindir
from gridledger.twin.mqtt import mosquitto_binary


def etcd() -> None:
    try:
        etcd_binary()
    except EtcdUnavailable as e:
        pytest.skip(str(e))


def postgres() -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql (./dev services does it)")


def mosquitto() -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed: apt-get install mosquitto (./dev services does it)")


#: For a whole test function or module (``pytestmark``): skip when mosquitto is missing.
needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed (./dev services)")
