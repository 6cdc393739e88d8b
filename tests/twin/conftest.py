"""Fixtures of the digital-twin tests: a private mosquitto broker (skipped only if mosquitto is absent),
device credentials and a controller on a manual clock."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gridledger.twin.controller import TwinController
from gridledger.twin.identity import Credentials
from gridledger.twin.mqtt import Broker, mosquitto_binary
from gridledger.twin.store import TwinStore


class Clock:
    """A manual clock (seconds)."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A private anonymous mosquitto on a free loopback port, stopped after the test."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (./dev services installs it)")
    with Broker() as b:
        yield b


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def controller(clock: Clock) -> Iterator[TwinController]:
    store = TwinStore()
    yield TwinController(store, os.urandom(32), clock=clock)
    store.close()


@pytest.fixture
def meter(controller: TwinController) -> Credentials:
    """A registered meter ``m1``: its credentials with the AES key the controller provisioned."""
    creds = Credentials.generate("m1")
    key = controller.register_physical(creds.identity, {"ID": 1, "Name": "Smart_Meter", "On": 1})
    return Credentials("m1", creds.seed, key)
