"""From a helper's upload to its share columns: its own HPKE keys and ``ipa.reports.decode``."""

from __future__ import annotations

from collections.abc import Callable

from ipa.network import read_key_registry
from ipa.query import QuerySpec
from ipa.reports.decode import DecodedBatch, decode_batch
from ipa_helper.config import HelperConfig

__all__ = ["Decoder", "make_decoder"]

Decoder = Callable[[bytes | bytearray, QuerySpec], DecodedBatch]


def make_decoder(config: HelperConfig) -> Decoder:
    """A decoder with this helper's key registry (current and previous keys), read once.

    The match keys are opened by this process and its children (a helper with
    Ray workers decodes on them instead: ``ipa_helper.cluster``). The decoder
    empties the upload buffer it is given once it has read it (``consume``),
    so the upload is not held beside the decoded columns.
    """
    keys = read_key_registry(config.hpke_keys)

    def decode(data: bytes | bytearray, spec: QuerySpec) -> DecodedBatch:
        return decode_batch(
            data,
            keys,
            spec.binding,
            spec.config,
            policy=spec.invalid_reports,
            last_epoch=spec.last_epoch,
            consume=True,
        )

    return decode
