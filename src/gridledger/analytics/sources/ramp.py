"""Source ``ramp``: the RAMP bottom-up stochastic model, with its authors' example households (``rampdemand``).

F. Lombardi, S. Balderrama, S. Quoilin, E. Colombo, *Generating high-resolution multi-energy load profiles for
remote areas with an open-source stochastic model*, Energy 177, 2019 (``rampdemand`` 0.5.2, EUPL-1.2). A user
class owns appliances, each with a rated power, functioning windows, a total time of use and its random
variability, duty cycles and a chance of occasional use; every day RAMP draws each appliance's windows, time of use
and switch-on events minute by minute, more of them coinciding inside a peak time range.

The households are the four household classes of RAMP's own example ``ramp/example/input_file_1.py`` (a
village-scale community its authors adapted from the 2019 paper's data): high, higher-middle, lower-middle and low
income (11 / 38 / 34 / 45 users there), with their lights, TV, DVD, antenna, radio, phone chargers, mixer and
(the two higher classes) freezers. The village's hospital, school, public lighting and church are left out.
Meter ``k`` is one user of a class drawn with the example's shares; its days are independent RAMP draws of that
class (RAMP has no memory from day to day, and homes of one class differ only by their draws). The peak time
range is drawn once per call from the four classes, as RAMP does once per use case. Native resolution 1 minute;
days from a Monday, RAMP's weekday/weekend day types.

``rampdemand`` declares tqdm, openpyxl, xlsxwriter, plotly, matplotlib and multiprocess for its parallel runs,
spreadsheet inputs and plots; none of them is needed to draw profiles. Those not installed are replaced by inert
stand-ins only while ``ramp`` is imported (then removed from :data:`sys.modules`), and RAMP's import-time change
of the warning filters is undone. RAMP draws from Python's global :mod:`random`; its state is saved and restored
around every call, so a seed gives the same homes and the caller's random state is untouched.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import runpy
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import SourceUnavailable, check_request, to_frame

HOUSEHOLDS = ("high income", "higher middle income", "lower middle income", "low income")
"""RAMP's example user classes that are households (``input_file_1``), in its order."""
START = pd.Timestamp("2019-01-07")  # a Monday
NATIVE_S = 60
# what rampdemand imports at module level but never uses to draw profiles
_OPTIONAL = (
    "tqdm",
    "openpyxl",
    "openpyxl.worksheet",
    "openpyxl.worksheet.cell_range",
    "plotly",
    "plotly.express",
    "plotly.graph_objects",
    "matplotlib",
    "matplotlib.pyplot",
)


def _inert(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def missing(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def call(*args, **kwargs):
            raise SourceUnavailable(f"rampdemand needs {name.split('.')[0]} for {attr}; gridledger does not use it")

        return call

    module.__getattr__ = missing  # type: ignore[method-assign]
    return module


def _modules():
    """``(ramp.core.core, ramp.core.utils, path of ramp/example/input_file_1.py)``, importing ``ramp`` without
    its optional dependencies."""
    spec = importlib.util.find_spec("ramp")
    example = Path(spec.origin or ".").parent / "example" / "input_file_1.py" if spec else None
    if example is None or not example.is_file():
        raise SourceUnavailable("source 'ramp' needs the rampdemand package (pip install --no-deps rampdemand==0.5.2)")
    if "ramp.core.utils" not in sys.modules:
        stand_ins = {}
        for name in _OPTIONAL:
            top = name.split(".")[0]
            if top in stand_ins or sys.modules.get(name) is None and importlib.util.find_spec(top) is None:
                stand_ins[name] = sys.modules[name] = _inert(name)
                parent, _, child = name.rpartition(".")
                if parent:
                    setattr(sys.modules[parent], child, stand_ins[name])
        try:
            with warnings.catch_warnings():  # ramp.core.core sets DeprecationWarning to "always" on import
                importlib.import_module("ramp.core.core")
                importlib.import_module("ramp.core.utils")
        except ImportError as exc:
            raise SourceUnavailable(f"source 'ramp': rampdemand does not import here ({exc})") from exc
        finally:
            for name in stand_ins:
                sys.modules.pop(name, None)
    return sys.modules["ramp.core.core"], sys.modules["ramp.core.utils"], example


def households() -> dict[str, object]:
    """RAMP's example household classes (``ramp.User`` objects) by name, built afresh from the example file.

    Fresh objects matter: an appliance's ``daily_use`` is its functioning windows until it draws a day and
    that day afterwards, and RAMP's peak time range is computed from it (as in a new RAMP run: the windows).
    """
    *_, example = _modules()
    with warnings.catch_warnings():
        users = {u.user_name: u for u in runpy.run_path(str(example))["User_list"]}
    return {name: users[name] for name in HOUSEHOLDS}


def read(meters: int = 30, days: int = 45, step: str = "1min", seed: int = 0) -> pd.DataFrame:
    """``meters`` homes over ``days`` days (from a Monday) in the common frame."""
    step_s = check_request(meters, days, step)
    if days > 365:
        raise ValueError(f"RAMP's example appliances have powers for one year; asked for {days} days")
    core, utils, _ = _modules()
    classes = households()
    sizes = np.array([classes[name].num_users for name in HOUSEHOLDS], dtype=float)
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(HOUSEHOLDS), size=meters, p=sizes / sizes.sum())
    day_types = [utils.get_day_type(d) for d in pd.date_range(START, periods=days)]
    saved = random.getstate()
    try:
        random.seed(int(rng.integers(0, 2**31)))
        usecase = core.UseCase(name="gridledger households", users=list(classes.values()))
        peak = usecase.calc_peak_time_range()
        power = np.zeros((meters, days * 1440))
        for m, kind in enumerate(kinds):
            user = classes[HOUSEHOLDS[kind]]
            random.seed(int(rng.integers(0, 2**31)))
            for day, day_type in enumerate(day_types):
                power[m, day * 1440 : (day + 1) * 1440] = user.generate_single_load_profile(day, peak, day_type)
    finally:
        random.setstate(saved)
    # RAMP marks an appliance's open windows with 0.001 W before it switches it on: not consumption
    power[power < 0.5] = 0.0  # the smallest example appliance draws 2 W
    names = [f"ramp-{HOUSEHOLDS[k].replace(' ', '-')}-{m + 1:03d}" for m, k in enumerate(kinds)]
    return to_frame(names, START, power, NATIVE_S, step_s)
