"""The three-party test world: share inputs, run a protocol, open its output, check its cost.

Used by the tests of every layer, by ``bench/`` and by anyone writing a new
protocol (as ipa-core keeps its ``TestWorld`` in the library)::

    result = run(multiply, share_arithmetic(x), share_arithmetic(y))
    assert (opened(result) == x * y).all()
    check_cost(multiply, result, rows=len(x), word_bytes=8)

**Documented cost.** A protocol's docstring states its cost in one sentence
that :func:`documented_cost` reads::

    Cost: ``2*log2(K) + 1`` rounds, ``(2, 1, 1)`` words per row.

The first expression is the communication rounds (latency, see
:mod:`ipa.mpc.channel`), the second the words each helper sends per row: one
number for all three, or a tuple (H1, H2, H3). ``bytes per row`` may stand
for ``words per row``, ``element`` for ``row``, and the words may be left
out; ``at most`` may precede the rounds where
consecutive steps overlap in ways a short formula does not capture (the
sort). Both are Python expressions in the protocol's parameters (passed by
the test) where ``log2(x)`` is ⌈log2 x⌉ (0 for x ≤ 1), ``nbytes(w)`` the
bytes of a packed ``w``-bit boolean word (1, 2, 4 or 8), and ``min``,
``max``, ``sum``, ``range``, ``tuple`` are Python's. :func:`check_cost` compares them
with what the channel measured. A protocol whose malicious mode sends more
states that in a second sentence, ``Malicious cost: ...`` in the same form,
which ``check_cost(..., security="malicious")`` reads instead.

**Workers.** :func:`run_distributed` runs a distributed protocol with W
workers per helper (:func:`ipa.mpc.memory.run_workers`), each holding its
block of every shared input; :func:`opened_blocks` joins the workers' output
blocks in worker order and reconstructs them. A distributed protocol states
what its helper's workers send each other in a ``Collective cost: at most
``B`` bytes per row`` sentence (per helper, summed over its workers), which
:func:`check_collective_cost` compares with the collectives' counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ipa.mpc.collective import Blocks
from ipa.mpc.memory import RunResult, Tamper, WorkersResult, run_three, run_workers
from ipa.mpc.replicated import Shares, _Pair
from ipa.mpc.ring import bool_dtype
from ipa.mpc.sharing import reconstruct

__all__ = [
    "Cost",
    "check_collective_cost",
    "check_cost",
    "documented_collective_cost",
    "documented_cost",
    "measured_cost",
    "opened",
    "opened_blocks",
    "per_party",
    "run",
    "run_distributed",
]


def per_party(*shared: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Regroup ``k`` lists of three parties' shares into three tuples of ``k`` shares."""
    return [tuple(s[i] for s in shared) for i in range(3)]


def run(
    protocol: Callable[..., Any],
    *shared: Sequence[Any],
    timeout: float = 600.0,
    tamper: Tamper | None = None,
    security: str = "semi-honest",
) -> RunResult:
    """Run ``protocol(ctx, *shares_of_party)`` on all three parties in the in-memory runner.

    ``tamper`` makes one party alter one message (:class:`ipa.mpc.memory.Tamper`);
    ``security="malicious"`` runs in malicious mode (:func:`ipa.mpc.memory.run_three`).
    """
    return run_three(
        lambda ctx, args: protocol(ctx, *args),
        per_party(*shared),
        timeout=timeout,
        tamper=tamper,
        security=security,
    )


def opened(result: RunResult) -> np.ndarray | list[np.ndarray]:
    """Reconstruct a protocol's output: one share column, or a list/tuple of them."""
    first = result.outputs[0]
    if isinstance(first, list | tuple):
        return [reconstruct([o[k] for o in result.outputs]) for k in range(len(first))]
    return reconstruct(result.outputs)


@dataclass(frozen=True)
class Cost:
    """Communication rounds (or their bound) and the words each helper (H1, H2, H3) sends per row."""

    rounds: int
    words_per_row: tuple[float, float, float] | None  # None: not stated
    at_most: bool = False

    def __str__(self) -> str:
        rounds = f"{'at most ' if self.at_most else ''}{self.rounds} rounds"
        if self.words_per_row is None:
            return rounds
        return rounds + ", (" + ", ".join(f"{w:g}" for w in self.words_per_row) + ") words per row"


_COST = re.compile(
    r"Cost: (?P<bound>at most )?``(?P<rounds>[^`]+)`` rounds?"
    r"(?:, ``(?P<words>[^`]+)`` (?P<unit>word|byte)s? per (?:row|element))?"
)
_MALICIOUS_COST = re.compile("Malicious c" + _COST.pattern[1:])
_BUILTINS = {"min": min, "max": max, "sum": sum, "range": range, "tuple": tuple}


def _log2(x: int) -> int:
    return max(int(x) - 1, 0).bit_length()


def _nbytes(width: int) -> int:
    return bool_dtype(width).itemsize


def _stated(
    protocol: Callable[..., Any],
    sentence: re.Pattern[str],
    malicious: re.Pattern[str],
    security: str,
    form: str,
) -> re.Match[str]:
    """The docstring's cost sentence: in malicious mode its malicious one if it has one, else the plain."""
    text = " ".join((protocol.__doc__ or "").split())
    found = (malicious.search(text) if security == "malicious" else None) or sentence.search(text)
    if found is None:
        raise ValueError(f"{protocol.__qualname__}'s docstring states no '{form}'")
    return found


def _evaluate(expression: str, params: dict[str, Any]) -> Any:
    """A cost expression of a docstring, in the protocol's parameters."""
    scope = {"__builtins__": _BUILTINS, "log2": _log2, "nbytes": _nbytes, **params}
    return eval(expression, scope)  # our own docstrings, in tests only


def documented_cost(
    protocol: Callable[..., Any], word_bytes: int = 8, security: str = "semi-honest", **params: int
) -> Cost:
    """The cost ``protocol``'s docstring states, for ``params``, in words of ``word_bytes`` bytes.

    With ``security="malicious"`` a ``Malicious cost:`` sentence is read if the
    docstring has one (the malicious mode costs more), else the ``Cost:`` one
    (the malicious mode sends exactly what the semi-honest one does).

    A docstring in ``bytes per row`` is converted to words. Raises ValueError if
    the docstring has no ``Cost:`` sentence in the form this module describes.
    """
    found = _stated(protocol, _COST, _MALICIOUS_COST, security, "Cost: ``R`` rounds, ``W`` words per row")
    rounds = _evaluate(found["rounds"], params)
    if found["words"] is None:
        return Cost(int(rounds), None, bool(found["bound"]))
    words = _evaluate(found["words"], params)
    per_helper = tuple(words) if isinstance(words, tuple) else (words,) * 3
    if found["unit"] == "byte":
        per_helper = tuple(w / word_bytes for w in per_helper)
    return Cost(int(rounds), per_helper, bool(found["bound"]))


def measured_cost(result: RunResult, rows: int, word_bytes: int = 8, prefix: str | None = None) -> Cost:
    """Rounds and words per row each helper sent in ``result`` (only at or below ``prefix``)."""
    stats = [s.under(prefix) if prefix else s for s in result.stats]
    words = tuple(s.total_bytes / max(rows, 1) / word_bytes for s in stats)
    return Cost(max(s.rounds for s in stats), words)  # type: ignore[arg-type]


def check_cost(
    protocol: Callable[..., Any],
    result: RunResult,
    rows: int,
    word_bytes: int = 8,
    prefix: str | None = None,
    security: str = "semi-honest",
    **params: int,
) -> Cost:
    """Assert that ``result`` cost what ``protocol``'s docstring says for ``params``; return it.

    ``security`` picks the docstring's cost sentence (:func:`documented_cost`).
    """
    documented = documented_cost(protocol, word_bytes, security, **params)
    measured = measured_cost(result, rows, word_bytes, prefix)
    same_words = documented.words_per_row is None or all(
        math.isclose(a, b, abs_tol=1e-9)
        for a, b in zip(documented.words_per_row, measured.words_per_row or (), strict=True)
    )
    if documented.at_most:
        rounds_ok = measured.rounds <= documented.rounds
    else:
        rounds_ok = measured.rounds == documented.rounds
    if not rounds_ok or not same_words:
        raise AssertionError(
            f"{protocol.__qualname__}: docstring says {documented}, measured {measured} ({params})"
        )
    return measured


def run_distributed(
    protocol: Callable[..., Any],
    *shared: Sequence[_Pair],
    workers: int,
    sizes: Sequence[int] | None = None,
    timeout: float = 600.0,
    tamper: Tamper | None = None,
    security: str = "semi-honest",
) -> WorkersResult:
    """Run ``protocol(ctx, *blocks)`` on W workers per helper, each given its block of every input.

    ``shared`` are three-party shares of equally long columns; worker k gets
    rows ``sizes``-block k of each (default: the even blocks of ``slices``);
    ``tamper`` and ``security`` as in :func:`ipa.mpc.memory.run_workers`.
    """
    n = len(shared[0][0]) if shared else 0
    blocks = Blocks.of_sizes(sizes) if sizes is not None else Blocks.even(n, workers)
    if blocks.workers != workers or blocks.n != n:
        raise ValueError(f"sizes must be {workers} block sizes adding up to {n}, got {sizes}")
    inputs = [
        [tuple(column[i][..., blocks.rows(k)] for column in shared) for k in range(workers)] for i in range(3)
    ]
    return run_workers(
        lambda ctx, args: protocol(ctx, *args),
        inputs,
        workers=workers,
        timeout=timeout,
        tamper=tamper,
        security=security,
    )


def opened_blocks(result: WorkersResult) -> np.ndarray | list[np.ndarray]:
    """Reconstruct the workers' outputs joined in worker order: one column, or a list of them."""
    first = result.outputs[0][0]
    if isinstance(first, list | tuple):
        return [
            reconstruct([_joined([o[c] for o in by_worker]) for by_worker in result.outputs])
            for c in range(len(first))
        ]
    return reconstruct([_joined(list(by_worker)) for by_worker in result.outputs])


def _joined(blocks: list[Shares]) -> Shares:
    return blocks[0].like(
        np.concatenate([b.left for b in blocks], axis=-1), np.concatenate([b.right for b in blocks], axis=-1)
    )


_COLLECTIVE_COST = re.compile(r"Collective cost: at most ``(?P<bytes>[^`]+)`` bytes per row")
_MALICIOUS_COLLECTIVE_COST = re.compile(
    r"Malicious collective cost: at most ``(?P<bytes>[^`]+)`` bytes per row"
)


def documented_collective_cost(
    protocol: Callable[..., Any], security: str = "semi-honest", **params: float
) -> float:
    """The bound on bytes per row each helper's workers send each other, from the docstring
    (its ``Malicious collective cost:`` sentence with ``security="malicious"``, if it has one)."""
    form = "Collective cost: at most ``B`` bytes per row"
    found = _stated(protocol, _COLLECTIVE_COST, _MALICIOUS_COLLECTIVE_COST, security, form)
    return float(_evaluate(found["bytes"], params))


def check_collective_cost(
    protocol: Callable[..., Any],
    result: WorkersResult,
    rows: int,
    security: str = "semi-honest",
    **params: float,
) -> list[float]:
    """Assert that no helper's workers sent each other more than the docstring's bound; return
    each helper's measured bytes per row."""
    bound = documented_collective_cost(protocol, security, **params)
    measured = [b / max(rows, 1) for b in result.collective_bytes()]
    if max(measured) > bound + 1e-9:
        raise AssertionError(
            f"{protocol.__qualname__}: docstring bounds the collectives at {bound:g} bytes per row, "
            f"measured {measured} ({params})"
        )
    return measured
