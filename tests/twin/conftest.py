"""Fixtures of the digital-twin tests: a private mosquitto broker (skipped only if mosquitto is absent),
device credentials, a controller on a manual clock, and a small household for a meter to measure."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from tests import requires

from gridledger.devices import Blender, Household, Iron, Profile
from gridledger.twin.identity import Credentials
from gridledger.twin.mqtt import Broker
from gridledger.twin.physical import HouseholdSignal
from gridledger.twin.twin_controller import TwinController
from gridledger.twin.twin_store import TwinStore

START = pd.Timestamp("2024-04-18 18:00", tz="America/Mexico_City")


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
    requires.mosquitto()
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


def home(seed: int = 0, base_w: float = 400.0, days: int = 2) -> Household:
    """A home with an iron and a blender whose base load is ``base_w`` W +- 20 % (seeded), 1-minute steps,
    from ``days - 1`` days before ``START`` to a day after it."""
    index = pd.date_range(START - pd.Timedelta(days=days - 1), periods=days * 1440, freq="1min")
    load = base_w * np.clip(1 + 0.2 * np.random.default_rng(seed).standard_normal(len(index)), 0.2, None)
    return Household("H1", Profile(pd.Series(load, index=index)), appliances=[Iron(), Blender()])


@pytest.fixture
def home_signal() -> Callable[..., HouseholdSignal]:
    """Factory: ``home_signal(serial, seed=0, **HouseholdSignal fields)``, the meter of ``home(seed)`` at START."""
    return lambda serial, seed=0, **kw: HouseholdSignal(serial, home(seed), START, seed=seed, **kw)
