"""The exception hierarchy: one base class and a few kinds a caller can act on."""

import enum

__all__ = [
    "ConfigError",
    "InputError",
    "InvalidReportError",
    "InvalidReportReason",
    "IpaError",
    "MaliciousBehaviourError",
    "ProtocolError",
    "TransportError",
]


class IpaError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(IpaError, ValueError):
    """Input data (a CSV file, a column, an argument) is malformed or out of range."""


class ProtocolError(IpaError):
    """An MPC protocol was misused (reused step, mismatched shapes) or saw inconsistent shares."""


class MaliciousBehaviourError(IpaError):
    """A check for a deviating helper (or an inconsistent report collector) failed: abort the query.

    ``check`` names the check that failed (``"input consistency"``,
    ``"verified reveal"``, ...). The message names the check and the helpers
    involved, never a value, a share or a digest.
    """

    def __init__(self, check: str, detail: str = "") -> None:
        self.check = check
        super().__init__(
            f"malicious behaviour detected: {check} check failed" + (f" ({detail})" if detail else "")
        )


class TransportError(IpaError):
    """A message between parties was lost, late or malformed."""


class ConfigError(IpaError):
    """A configuration file or parameter is invalid."""


class InvalidReportReason(enum.IntEnum):
    """Why a report (or a whole upload batch) was refused; the values are stable wire codes."""

    TRUNCATED = 1
    """The bytes end before the report (or the batch header) does."""
    CORRUPT = 2
    """Malformed bytes: bad magic, unknown format version or suite, trailing bytes."""
    UNKNOWN_KEY_ID = 3
    """The key id names no key this helper holds (never issued, or retired)."""
    DECRYPTION_FAILED = 4
    """An HPKE or AEAD open failed; deliberately no more detail than that."""
    WRONG_HELPER = 5
    """The part was made for another helper."""
    WRONG_SITE = 6
    """The match key was made on another site than the query's."""
    WRONG_REPORT_COLLECTOR = 7
    """The match key was made for another report collector than the query's."""
    WRONG_MATCH_KEY_PROVIDER = 8
    """The match key is bound to another match-key provider than the query's."""
    WRONG_EPOCH = 9
    """The match key was made in another epoch than the query's."""
    EXPIRED_EPOCH = 10
    """The match key's epoch is older than the oldest epoch the helper still accepts."""
    DUPLICATE = 11
    """The same report (byte for byte, after decryption) appeared earlier in the batch."""
    OUT_OF_RANGE = 12
    """A share component does not fit the query's bit width for its field."""


class InvalidReportError(IpaError):
    """A report or an upload batch is refused.

    ``reason`` is machine-readable; ``index`` is the 0-based report index in the
    batch (``None`` when the batch as a whole is refused, e.g. its header). The
    message never contains a share, a key or a match key.
    """

    def __init__(self, reason: InvalidReportReason, index: int | None = None, detail: str = "") -> None:
        self.reason = reason
        self.index = index
        self.detail = detail
        where = "batch" if index is None else f"report {index}"
        text = reason.name.lower().replace("_", " ")
        super().__init__(f"{where}: {text}" + (f" ({detail})" if detail else ""))
