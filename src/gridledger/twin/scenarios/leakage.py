"""Sensitive-data leakage (paper 4.5): only authorized parties may read or export data. An analyst with a
grant reads and exports throughout the run; at the injection an outsider asks for a meter's history, an
insider asks beyond its grant, and a request is forged in the analyst's name."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as paho
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from gridledger.twin import mqtt
from gridledger.twin.detectors import Alarm
from gridledger.twin.identity import unseal
from gridledger.twin.messages import AccessRequest
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, Intrusion, LabOptions, TwinLab, run_attack

REQUEST_EVERY_S = 0.25


class Party:
    """A data consumer on the broker: signs requests, opens sealed answers."""

    def __init__(self, lab: TwinLab, name: str) -> None:
        self.name = name
        self.key = SigningKey.generate()
        self.answers: list[bytes] = []
        self.client: paho.Client = mqtt.connect(lab.broker.port, name)
        self.client.on_message = lambda _c, _u, m: self.answers.append(m.payload)
        self.client.subscribe(mqtt.access_response(name), qos=1)

    def ask(self, action: str, serial: str, as_party: str | None = None) -> None:
        raw = AccessRequest.make(self.key, as_party or self.name, action, serial)
        self.client.publish(mqtt.ACCESS_REQUEST, raw, qos=1)

    def opened(self) -> int:
        """How many answers this party could decrypt (data it obtained)."""
        count = 0
        for raw in self.answers:
            try:
                unseal(bytes(self.key), raw)
            except (CryptoError, TypeError, ValueError):
                continue  # a denial is plain JSON: nothing to open
            count += 1
        return count


class DataThieves(Intrusion):
    sources = frozenset({"intruder", "neighbour"})

    def __init__(self) -> None:
        self.analyst: Party | None = None
        self.parties: list[Party] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prepare(self, lab: TwinLab) -> None:
        """Before the run: the analyst (grant: read+export all) and the neighbour (grant: read meter-1)."""
        self.analyst = Party(lab, "analyst")
        neighbour = Party(lab, "neighbour")
        lab.controller.grant("analyst", self.analyst.key.verify_key.encode(), ["*"], ["read", "export"])
        lab.controller.grant("neighbour", neighbour.key.verify_key.encode(), ["meter-1"], ["read"])
        self.parties = [self.analyst, neighbour]
        self._thread = threading.Thread(target=self._honest, args=(lab,), daemon=True)
        self._thread.start()

    def _honest(self, lab: TwinLab) -> None:
        assert self.analyst is not None
        i = 0
        while not self._stop.wait(REQUEST_EVERY_S):
            self.analyst.ask("read" if i % 2 else "export", lab.serials[i % len(lab.serials)])
            self.requests += 1
            i += 1

    def start(self, lab: TwinLab, target: str) -> None:
        intruder = Party(lab, "intruder")
        self.parties.append(intruder)
        intruder.ask("export", target)
        intruder.ask("read", target, as_party="analyst")  # forged: signed with the intruder's key
        self.parties[1].ask("export", target)  # the neighbour may only read meter-1

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        time.sleep(0.2)
        details = {
            "honest_requests": self.requests,
            "honest_answers_opened": self.parties[0].opened() if self.parties else 0,
            "intruder_answers_opened": self.parties[2].opened() if len(self.parties) > 2 else 0,
            "neighbour_answers_opened": self.parties[1].opened() if len(self.parties) > 1 else 0,
        }
        for party in self.parties:
            mqtt.close(party.client)
        return details

    def is_attack(self, alarm: Alarm, target: str) -> bool:
        forged = alarm.source == "analyst" and "does not verify" in alarm.detail
        return alarm.source in self.sources or forged

    def honest_observations(self) -> int:
        return self.requests


class Leakage:
    name = "leakage"
    threat = "sensitive-data leakage: only authorized parties read or export data"
    detector = "signed requests checked against per-party grants (action, devices), nonce replay; sealed answers"
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label="unauthorized export, over-grant export and a forged request",
            kinds={"unauthorized-access"},
            intrusion=DataThieves(),
            options=LabOptions(known_clients={"analyst", "neighbour"}),
        )
        return run_attack(ctx, plan)


register(Leakage())
