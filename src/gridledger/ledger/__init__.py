"""The deterministic ledger core (PETra's rules): no I/O, integers only, canonical encoding.

Modules: ``errors`` (reject codes), ``crypto`` (Ed25519, SHA-256, addresses), ``encoding`` (canonical bytes),
``assets`` (EPA, ECA, FA), ``transactions`` (one envelope, one class per kind), ``rules`` (context-free checks),
``policy`` (the DSO policy timeline), ``state`` (context-dependent checks and the ledger state), ``merkle``,
``block`` (headers, hash chaining), ``billing`` (the meter's bill).
"""
