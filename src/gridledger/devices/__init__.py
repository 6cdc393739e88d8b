"""Step-able device models for the digital twin: smart meter, iron, blender, PV, battery and the household; and
the same models run for a whole community at once (``simulate_households(community) -> HouseholdData``).

Each model exposes its state in the paper's JSON mapping style (``ID``, ``Name``, ``On``, ``Voltage``,
``Current``, ``Power``, ``Consumption``, ...) with ``to_twin()`` and takes commands with ``apply(command)``.
"""

from gridledger.devices.appliances import BLENDER_SPEEDS_W, IRON_SETTINGS, ApplianceUse, Blender, Iron
from gridledger.devices.base import CommandError, Device, EnergyCounter, Profile, TwinObject
from gridledger.devices.battery import Battery
from gridledger.devices.household import Household, HouseholdData, households, simulate_households
from gridledger.devices.meter_device import DISPLAY, MeterDevice
from gridledger.devices.pv_system import PVSystem

__all__ = [
    "BLENDER_SPEEDS_W",
    "DISPLAY",
    "IRON_SETTINGS",
    "ApplianceUse",
    "Battery",
    "Blender",
    "CommandError",
    "Device",
    "EnergyCounter",
    "Household",
    "HouseholdData",
    "Iron",
    "PVSystem",
    "Profile",
    "MeterDevice",
    "TwinObject",
    "households",
    "simulate_households",
]
