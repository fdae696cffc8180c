"""The IPA helper: one of the three MPC parties, as a gRPC server.

Modules: ``config`` (the helper's TOML), ``helper`` (the query lifecycle,
free of gRPC), ``peers`` (the peer interface it talks to, and the MPC channel
over it), ``transport`` (its gRPC implementation), ``memory`` (its in-memory
implementation: three helpers in one process), ``mailbox`` (messages waiting
for the protocol), ``queries`` (the registry of queries and their states),
``ledger`` (the privacy budget), ``services`` (the Query, Peer and Budget
servicers), ``server`` (``ipa-helper``), ``allocator`` (the process's malloc settings).
"""

import os as _os

# gRPC's fork handlers are on by default in grpcio; with them, a child forked from a helper
# whose gRPC threads run (Ray starts its GCS, raylet and agents with fork + preexec_fn + exec)
# aborts before its exec about once in 30 forks (SIGABRT, "epoll_wait error: Bad file
# descriptor"; 31 of 900 measured), and a local Ray cluster failed to start about once in six.
# Every child a helper makes execs at once, which is the case gRPC documents this setting
# for. It must be set before grpc is imported, hence here (docs/scaling.md, Faults).
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
