"""The IPA helper: one of the three MPC parties, as a gRPC server.

Modules: ``config`` (the helper's TOML), ``helper`` (the query lifecycle,
free of gRPC), ``peers`` (the peer interface it talks to, and the MPC channel
over it), ``transport`` (its gRPC implementation), ``memory`` (its in-memory
implementation: three helpers in one process), ``mailbox`` (messages waiting
for the protocol), ``queries`` (the registry of queries and their states),
``ledger`` (the privacy budget), ``services`` (the Query, Peer and Budget
servicers), ``server`` (``ipa-helper``).
"""
