"""The IPA helper: one of the three MPC parties, as a gRPC server.

Modules: ``config`` (the helper's TOML), ``transport`` (the gRPC channel of
``ipa.mpc``), ``mailbox`` (messages waiting for the protocol), ``helper``
(the query lifecycle), ``ledger`` (the privacy budget), ``services`` (the
Query, Peer and Budget servicers), ``server`` (``ipa-helper``).
"""
