"""The exception hierarchy: one base class and a few kinds a caller can act on."""

__all__ = ["ConfigError", "InputError", "IpaError", "ProtocolError", "TransportError"]


class IpaError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(IpaError, ValueError):
    """Input data (a CSV file, a column, an argument) is malformed or out of range."""


class ProtocolError(IpaError):
    """An MPC protocol was misused (reused step, mismatched shapes) or saw inconsistent shares."""


class TransportError(IpaError):
    """A message between parties was lost, late or malformed."""


class ConfigError(IpaError):
    """A configuration file or parameter is invalid."""
