"""Attack scenarios: what a scenario is, what one run yields, how K seeded runs are summarized.

A scenario injects an attack into a small community and measures its detection. Every run has an honest
period (before the injection) and an attacked period. Measured per run: whether an alarm of the expected
kind was raised on the attacked source after the injection, the time to detect (wall-clock seconds from
the injection to that alarm), the false alarms (alarms not caused by the attack: on honest sources, or
before the injection) over the honest observations (messages and requests from honest parties, and the
attacked party's before the injection), and the data lost (genuine readings sent by the devices that
are not in the controller's store at the end of the run).

A run injects one attack attempt unless the scenario makes several (``RunResult.attempts``, e.g. every
request of an unregistered node); the detection rate is detected attempts over attempts.

Ledger-level scenarios (tampered store, fake price, unregistered node, flood, coordinator loss) drive a
local network of node processes instead of the MQTT lab (``needs_broker`` False, ``needs_etcd`` True). A
scenario may keep something expensive (a network) across the K runs of one invocation: its optional
``session(workdir, households)`` context manager yields it, and every run gets it as ``RunContext.shared``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gridledger.twin.detectors import Alarm


@dataclass(frozen=True)
class RunContext:
    """One run's inputs: the seed, the community size (households, one meter each), a scratch folder, what the
    scenario's session keeps across runs (``shared``; None outside a session), and the community file whose
    first homes the twin lab's meters measure (None: ``examples/community.toml``)."""

    seed: int
    households: int
    workdir: Path
    shared: Any = None
    community: Path | None = None


@dataclass(frozen=True)
class RunResult:
    """One run's outcome (times in wall-clock seconds).

    ``attempts`` is the number of attack attempts the run made (1 unless the scenario makes several) and
    ``attempts_detected`` how many of them were detected (default: all if ``detected``, else none).
    """

    injected: str
    detected: bool
    time_to_detect_s: float | None
    false_alarms: int
    honest_observations: int
    data_lost: int
    details: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    attempts_detected: int | None = None

    def __post_init__(self) -> None:
        caught = self.caught
        if self.attempts < 1 or not 0 <= caught <= self.attempts:
            raise ValueError(f"attempts ({self.attempts}) must be >= 1 and detected attempts ({caught}) in 0..attempts")

    @property
    def caught(self) -> int:
        """Detected attempts."""
        if self.attempts_detected is None:
            return self.attempts if self.detected else 0
        return self.attempts_detected


class Scenario(Protocol):
    name: str
    threat: str
    detector: str
    needs_broker: bool
    needs_etcd: bool

    def run(self, ctx: RunContext) -> RunResult: ...


_REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry (its ``name`` must be new)."""
    if scenario.name in _REGISTRY:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    _REGISTRY[scenario.name] = scenario
    return scenario


def scenarios() -> dict[str, Scenario]:
    return dict(_REGISTRY)


def session(scenario: Scenario, workdir: Path, households: int) -> AbstractContextManager[Any]:
    """The scenario's session for K runs (its ``session`` method, if it has one), yielding ``RunContext.shared``."""
    opener = getattr(scenario, "session", None)
    return nullcontext() if opener is None else opener(workdir, households)


def get(name: str) -> Scenario:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


@dataclass(frozen=True)
class Summary:
    """K runs of one scenario."""

    scenario: str
    runs: int
    detection_rate: float
    false_alarm_rate: float
    mean_time_to_detect_s: float | None
    data_lost: int
    results: tuple[RunResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "runs": self.runs,
            "detection_rate": self.detection_rate,
            "false_alarm_rate": self.false_alarm_rate,
            "mean_time_to_detect_s": self.mean_time_to_detect_s,
            "time_unit": "wall-clock seconds",
            "data_lost": self.data_lost,
            "results": [
                {
                    "injected": r.injected,
                    "detected": r.detected,
                    "time_to_detect_s": r.time_to_detect_s,
                    "false_alarms": r.false_alarms,
                    "honest_observations": r.honest_observations,
                    "data_lost": r.data_lost,
                    "attempts": r.attempts,
                    "attempts_detected": r.caught,
                    "details": r.details,
                }
                for r in self.results
            ],
        }


def summarize(name: str, results: Iterable[RunResult]) -> Summary:
    """Detection rate = detected attempts / attempts; false-alarm rate = false alarms / honest observations."""
    results = tuple(results)
    if not results:
        raise ValueError("no runs to summarize")
    times = [r.time_to_detect_s for r in results if r.detected and r.time_to_detect_s is not None]
    honest = sum(r.honest_observations for r in results)
    return Summary(
        scenario=name,
        runs=len(results),
        detection_rate=sum(r.caught for r in results) / sum(r.attempts for r in results),
        false_alarm_rate=sum(r.false_alarms for r in results) / honest if honest else 0.0,
        mean_time_to_detect_s=statistics.fmean(times) if times else None,
        data_lost=sum(r.data_lost for r in results),
        results=results,
    )


def first_detection(
    alarms: Iterable[Alarm], injected_at: float | None, is_attack: Callable[[Alarm], bool], kinds: set[str]
) -> tuple[float | None, int]:
    """(time to the first alarm of ``kinds`` caused by the attack, number of false alarms).

    An alarm is caused by the attack if ``is_attack(alarm)`` and it came at or after the injection; every
    other alarm is a false alarm.
    """
    detect: float | None = None
    false = 0
    for alarm in sorted(alarms, key=lambda a: a.t):
        caused = injected_at is not None and alarm.t >= injected_at and is_attack(alarm)
        if not caused:
            false += 1
        elif alarm.kind in kinds and detect is None:
            detect = alarm.t - injected_at  # type: ignore[operator]
    return detect, false
