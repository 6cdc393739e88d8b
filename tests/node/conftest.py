"""Fixtures for the node tests: a real 3-member etcd cluster on loopback, started once per test session."""

from __future__ import annotations

import pytest
from tests import requires

from gridledger.node.etcd import EtcdCluster


@pytest.fixture(scope="session")
def etcd_cluster():
    requires.etcd()
    cluster = EtcdCluster(3).start()
    try:
        yield cluster
    finally:
        cluster.stop()
