"""Simulations that drive the protocol roles end to end in one process.

The community run (``gridledger simulate``): one community file, end to end, on every layer of the ledger.
Modules: ``network`` (the community's HAN, NAN, FAN/WAN and head-end chains), ``strategy`` (each prosumer's forecast
and orders), ``nan_market`` (PETra on a NAN chain: day units, mixing, a round per slot, deposits), ``run``
(:func:`~gridledger.sim.run.run_community`: the slot loop, bills, the DSO view, rewards, the output tables).
``market_rounds`` runs PETra's private market rounds alone on one chain (``gridledger market simulate``).
"""
