"""The deterministic ledger core (PETra's rules and the PoEf validity rules): no I/O, integers only, canonical
encoding.

Modules: ``errors`` (reject codes), ``crypto`` (Ed25519, SHA-256, addresses), ``encoding`` (canonical bytes),
``assets`` (EPA, ECA, FA, outputs), ``transactions`` (the shared envelope), ``kinds`` (one module per transaction
kind: its class, context-free and contextual rules; decoding), ``ruleset`` (the rule set a genesis names: valid
kinds, whole-block checks, consensus), ``policy`` (the DSO policy timeline), ``members`` and ``committee`` (PoEf
members, scores, committee draw, quorum certificates), ``state`` (the ledger state), ``merkle``, ``block``
(headers, hash chaining), ``billing`` (the meter's bill).
"""
