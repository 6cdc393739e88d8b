"""PETra's participants on the ledger: the DSO, the smart meter (issuing, deposits, billing) and the prosumer wallet."""
