"""A batch decoded on a helper's workers, whose rows stay there (``ipa_helper.cluster``).

With ``[cluster] workers = W`` the coordinator cuts its upload into W parts
(report slices :func:`ipa.mpc.collective.slices` of n, the same cut at every
helper) and worker k decodes part k and keeps its rows. What comes back to the
coordinator is what the helpers' agreement on the rows needs
(``ipa_helper.helper._agree_rows``): each report's verdict byte (valid, made
off the querying site), the counts of invalid reports by reason, and the
number of match-key opens. The coordinator then tells each worker which of
its rows to drop (:class:`HeldRows`), and the query runs on them where they
are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ipa.errors import InvalidReportError
from ipa.mpc.collective import slices

__all__ = ["DecodedPart", "HeldRows", "RemoteBatch"]

Verdict = tuple[int, "int | None", str]
"""An InvalidReportError as data: (reason value, report index or None, detail)."""


@dataclass(frozen=True)
class DecodedPart:
    """What worker k returns from decoding its slice of the reports (its rows stay with it)."""

    verdicts: np.ndarray
    """One byte per report of the slice: valid (bit 0), made off the querying site (bit 1)."""
    rejected: dict[str, int]
    """Invalid reports of the slice by reason name."""
    distinct: int
    """Match-key opens."""
    first: Verdict | None
    """The slice's first invalid report (what policy FAIL refuses the batch for), if any."""
    error: Verdict | None
    """Why the batch is refused as a whole (a field chunk of the slice that does not open), if so."""
    pid: int
    sibling_bytes: int = 0
    """Bytes sent to the other workers of the helper (to find duplicates)."""
    sibling_bytes_in: int = 0

    @classmethod
    def refused(cls, exc: InvalidReportError, pid: int) -> DecodedPart:
        """The answer of a worker whose slice refuses the batch."""
        error = (int(exc.reason), exc.index, exc.detail)
        return cls(np.zeros(0, np.uint8), {}, 0, None, error, pid)


@dataclass(frozen=True)
class HeldRows:
    """The rows of a query held by the workers: worker k keeps the rows of its part but ``drop[k]``."""

    sizes: tuple[int, ...]
    """How many rows each worker keeps (its block of the query)."""
    drop: tuple[np.ndarray, ...] = field(repr=False)
    """Per worker, the indices (int64, within its part) of the rows it drops."""

    def __len__(self) -> int:
        return sum(self.sizes)


@dataclass(frozen=True)
class RemoteBatch:
    """The verdicts of a batch decoded on W workers (its rows are on them).

    ``verdicts[r]`` is report r's byte: valid (bit 0), made off the querying
    site (bit 1), the byte ``_agree_rows`` sends the peers.
    """

    verdicts: np.ndarray
    counts: dict[str, int]
    workers: int

    @property
    def valid(self) -> np.ndarray:
        """(n,) bool: the reports valid at this helper."""
        return (self.verdicts & 1).astype(bool)

    @property
    def off_site(self) -> np.ndarray:
        """(n,) bool: the valid reports made off the querying site."""
        return ((self.verdicts >> 1) & 1).astype(bool)

    def rejected(self) -> dict[str, int]:
        """Counts of invalid reports by reason name; empty if none."""
        return dict(self.counts)

    def select(self, keep: np.ndarray) -> HeldRows:
        """The rows where ``keep`` is true: what each worker keeps of its part."""
        parts = [keep[s] for s in slices(len(keep), self.workers)]
        return HeldRows(
            tuple(int(p.sum()) for p in parts), tuple(np.flatnonzero(~p).astype(np.int64) for p in parts)
        )
