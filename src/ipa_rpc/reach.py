"""Why a gRPC call did not reach its server, in words a person can act on.

gRPC reports a dead server, a certificate that is not the pinned one and a
server that accepts connections but never answers as the same UNAVAILABLE
or DEADLINE_EXCEEDED status with a long technical detail. Client and
helpers both turn that into one short reason ("connection refused", "TLS
handshake failed", "no answer within 5 s") next to the helper's name.
"""

from __future__ import annotations

import grpc

__all__ = ["unreachable_reason"]

_TRANSPORT = (
    ("connection refused", "connection refused (is the helper running?)"),
    ("handshake", "TLS handshake failed (its certificate is not the one configured for it?)"),
    ("certificate", "TLS handshake failed (its certificate is not the one configured for it?)"),
    ("socket closed", "the connection was closed at once (TLS on one side only?)"),
    ("name resolution", "its host name does not resolve"),
    ("dns resolution", "its host name does not resolve"),
    ("failed to connect", "the connection failed"),
)


def unreachable_reason(exc: grpc.RpcError, timeout: float) -> str | None:
    """Why the call never reached a server that could answer it; None if the server answered.

    ``timeout`` is the call's deadline, named in the reason when it passed.
    A status the server itself sent (a refusal, even UNAVAILABLE) gives None.
    """
    code = exc.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {timeout:g} s (stopped, overloaded or cut off?)"
    if code is not grpc.StatusCode.UNAVAILABLE:
        return None
    details = (exc.details() or "").lower()
    for pattern, reason in _TRANSPORT:
        if pattern in details:
            return reason
    return None
