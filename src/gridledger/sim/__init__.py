"""The community run: one community file, end to end, on every layer of the ledger.

Modules: ``households`` (each home's 1-minute load, PV, battery and net power), ``network`` (the community's
HAN, NAN, FAN/WAN and head-end chains), ``strategy`` (each prosumer's forecast and orders), ``nan_market`` (PETra on
a NAN chain: day units, mixing, a round per slot, deposits), ``run`` (:func:`~gridledger.sim.run.run_community`:
the slot loop, bills, the DSO view, rewards, the output tables), ``generate`` (a generated community file).
"""
