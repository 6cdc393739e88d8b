"""Fixtures for the node tests: a real 3-member etcd cluster on loopback, started once per test session."""

from __future__ import annotations

import pytest

from gridledger.node.etcd import EtcdCluster, EtcdUnavailable, etcd_binary


@pytest.fixture(scope="session")
def etcd_cluster():
    try:
        etcd_binary()
    except EtcdUnavailable as e:
        pytest.skip(str(e))
    cluster = EtcdCluster(3).start()
    try:
        yield cluster
    finally:
        cluster.stop()
