"""Time and communication of the MPC primitives in the in-memory three-party runner.

    python bench/mpc.py --rows N [--security MODE] [--json F] [--digit-bits D] [--only NAME ...]

Primitives, each on N rows of random data:

- ``multiply``: uint64 arithmetic ``x·y``;
- ``and``: 64-bit packed boolean words ``x & y`` (64 AND gates per row);
- ``shuffle``: one uint64 arithmetic column;
- ``sort``: 40-bit boolean keys with one uint64 arithmetic payload column
  (malicious mode: a 64-bit boolean one, as the malicious sort requires),
  ``--digit-bits`` bits per radix pass.

``--security malicious`` runs each primitive in malicious mode followed by
a checkpoint (``ipa.mpc.checkpoint``) at step ``bench/check``, which verifies
its products: the figures are the primitive plus its verification, to put
beside the default ``semi-honest`` ones (``docs/malicious.md``, §7). Shuffle
and sort run in malicious mode only once the verified shuffle exists
(``ipa.mpc.shuffle`` refuses otherwise: the row is reported as refused).

The inputs are shared before timing starts; only the ``run_three`` call is
timed. The output is then reconstructed and compared with numpy (for sort,
``payload[np.argsort(keys, kind="stable")]``); a wrong output makes the
script exit with status 1.

Each table row gives seconds, rows per second, words sent per row by each
helper H1, H2, H3 and the max, and rounds: communication rounds, i.e. latency,
the longest chain of messages each sent after the previous one arrived (see
``ipa.mpc.channel``; the shuffle's three steps take 2). A word is
8 bytes whatever was sent: words per row = bytes sent by the helper / N / 8,
so sort's uint32 indices count as half a word. ``--json F`` writes
``{"rows": N, "primitives": {name: {"seconds", "rows_per_s", "words_per_row",
"rounds", "words_per_row_by_helper"}}}`` where ``words_per_row`` is the max
over the helpers.

NB: the in-memory runner runs the three helpers as threads of one process,
so the time and the peak RSS printed at the end are those of all three
helpers together (plus the plaintext, shares and outputs), without a network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ipa.errors import ProtocolError
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
from ipa.mpc.context import Context
from ipa.mpc.memory import SECURITY_MODES, RunResult, run_three
from ipa.mpc.multiply import and_, multiply
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.shuffle import SHUFFLE_STEPS, shuffle
from ipa.mpc.sort import DEFAULT_DIGIT_BITS, SORT_STEPS, sort
from ipa.mpc.step import Steps
from ipa.mpc.testing import per_party
from ipa_helper.allocator import tune_malloc

__all__ = ["PRIMITIVES", "Case", "communication", "main", "make_case", "measure"]

KEY_BITS = 40
WORD_BYTES = 8


class Case(NamedTuple):
    """One benchmark: the protocol, each party's shared inputs, and the output check."""

    protocol: Callable[[Context, Any], Any]
    inputs: list[Any]  # inputs[i] is party i's argument to protocol
    check: Callable[[list[Any]], bool]  # the three parties' outputs -> equal to plaintext?


def _words(rng: np.random.Generator, rows: int, bits: int) -> np.ndarray:
    return rng.integers(0, 1 << bits, rows, dtype=np.uint64)


def _first_column(outputs: list[Any]) -> np.ndarray:
    return reconstruct([o[0] for o in outputs])


def multiply_case(rng: np.random.Generator, rows: int) -> Case:
    x, y = _words(rng, rows, 64), _words(rng, rows, 64)
    return Case(
        lambda ctx, xy: multiply(ctx, *xy),
        per_party(share_arithmetic(x), share_arithmetic(y)),
        lambda out: np.array_equal(reconstruct(out), x * y),
    )


def and_case(rng: np.random.Generator, rows: int) -> Case:
    x, y = _words(rng, rows, 64), _words(rng, rows, 64)
    return Case(
        lambda ctx, xy: and_(ctx, *xy),
        per_party(share_boolean(x, 64), share_boolean(y, 64)),
        lambda out: np.array_equal(reconstruct(out), x & y),
    )


def shuffle_case(rng: np.random.Generator, rows: int) -> Case:
    x = _words(rng, rows, 64)
    return Case(
        lambda ctx, column: shuffle(ctx, [column]),
        share_arithmetic(x),
        lambda out: np.array_equal(np.sort(_first_column(out)), np.sort(x)),
    )


def sort_case(
    rng: np.random.Generator, rows: int, digit_bits: int = DEFAULT_DIGIT_BITS, boolean_payload: bool = False
) -> Case:
    keys, payload = _words(rng, rows, KEY_BITS), _words(rng, rows, 64)
    shared = share_boolean(payload, 64) if boolean_payload else share_arithmetic(payload)
    return Case(
        lambda ctx, kp: sort(ctx, kp[0], [kp[1]], digit_bits=digit_bits),
        per_party(share_boolean(keys, KEY_BITS), shared),
        lambda out: np.array_equal(_first_column(out), payload[np.argsort(keys, kind="stable")]),
    )


PRIMITIVES: dict[str, Callable[..., Case]] = {
    "multiply": multiply_case,
    "and": and_case,
    "shuffle": shuffle_case,
    "sort": sort_case,
}


def make_case(
    name: str,
    rows: int,
    *,
    digit_bits: int = DEFAULT_DIGIT_BITS,
    seed: int = 0,
    security: str = "semi-honest",
) -> Case:
    """The benchmark ``name`` on ``rows`` rows of random data; ``digit_bits`` is for sort only.

    With ``security="malicious"`` the primitive is followed by its checkpoint (:func:`verified`).
    """
    rng = np.random.default_rng(seed)
    # The malicious sort takes boolean payloads only (ipa.mpc.sort): a 64-bit boolean column there.
    options = {"digit_bits": digit_bits, "boolean_payload": security == "malicious"} if name == "sort" else {}
    case = PRIMITIVES[name](rng, rows, **options)
    if security == "malicious":
        return case._replace(protocol=verified(name, case.protocol))
    return case


def communication(result: RunResult, rows: int) -> dict[str, Any]:
    """Words (8 bytes) sent per row by each helper and their max, and communication rounds (latency)."""
    by_helper = [sent / rows / WORD_BYTES for sent in result.bytes_sent()]
    return {"words_per_row": max(by_helper), "rounds": result.rounds, "words_per_row_by_helper": by_helper}


def _bench_steps(name: str) -> Steps:
    """The steps of a malicious run: the primitive at ``root/primitive``, its checkpoint at ``root/check``."""
    tree = {"shuffle": SHUFFLE_STEPS, "sort": SORT_STEPS}.get(name)
    if tree is None:  # a one-step protocol sends at the leaf itself
        return Steps(f"bench_{name}", "primitive", check=CHECKPOINT_STEPS)
    return Steps(f"bench_{name}", primitive=tree, check=CHECKPOINT_STEPS)


def verified(name: str, protocol: Callable[[Context, Any], Any]) -> Callable[[Context, Any], Any]:
    """Primitive ``name``'s ``protocol`` followed by a checkpoint of everything it recorded."""
    steps = _bench_steps(name)

    def run(ctx: Context, inputs: Any) -> Any:
        ctx = ctx.enter(steps)
        output = protocol(ctx.narrow("primitive"), inputs)
        checkpoint(ctx.narrow("check"))
        return output

    return run


def measure(case: Case, rows: int, security: str = "semi-honest") -> dict[str, Any] | None:
    """Time one ``run_three`` of ``case`` in ``security`` mode; its figures, or None if the output is wrong.

    A malicious ``case`` comes from ``make_case(..., security="malicious")``.
    """
    start = time.perf_counter()
    result = run_three(case.protocol, case.inputs, security=security)
    seconds = time.perf_counter() - start
    if not case.check(result.outputs):
        return None
    return {"seconds": seconds, "rows_per_s": rows / seconds, **communication(result, rows)}


def machine() -> str:
    return (
        f"# {os.cpu_count()} cpus, {platform.system()} {platform.machine()}, "
        f"python {platform.python_version()}, numpy {np.__version__}; "
        "in-memory runner: the three helpers are threads of one process"
    )


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


_COLUMNS = "{:<9} {:>9} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>6}"
_HEADER = _COLUMNS.format(
    "primitive", "rows", "seconds", "rows/s", "H1 w/row", "H2 w/row", "H3 w/row", "max w/row", "rounds"
)


def _row(name: str, rows: int, m: dict[str, Any]) -> str:
    words = [f"{w:.2f}" for w in [*m["words_per_row_by_helper"], m["words_per_row"]]]
    return _COLUMNS.format(name, rows, f"{m['seconds']:.3f}", f"{m['rows_per_s']:,.0f}", *words, m["rounds"])


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"rows must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time the MPC primitives in the in-memory three-party runner and check their outputs.",
        epilog="words/row = bytes sent by a helper / rows / 8 (8-byte words whatever the dtype sent); "
        "rounds = communication rounds (latency: the longest chain of dependent messages); "
        "the JSON's words_per_row is the max over the three helpers, words_per_row_by_helper "
        "lists H1, H2, H3. Seconds and peak RSS are for all three helpers in one process.",
    )
    parser.add_argument("--rows", type=_positive, required=True, metavar="N", help="rows of random data")
    parser.add_argument("--json", metavar="F", help='write {"rows": N, "primitives": {name: figures}} to F')
    parser.add_argument(
        "--security",
        choices=SECURITY_MODES,
        default="semi-honest",
        help="semi-honest (default) or malicious: each primitive plus the checkpoint verifying it",
    )
    parser.add_argument(
        "--digit-bits",
        type=int,
        choices=range(1, 9),
        default=DEFAULT_DIGIT_BITS,
        metavar="D",
        help=f"bits per radix-sort pass, 1-8 (default {DEFAULT_DIGIT_BITS})",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(PRIMITIVES),
        metavar="NAME",
        help=f"run only these primitives: {', '.join(PRIMITIVES)}",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tune_malloc()  # the helper process's malloc settings, before any thread (ipa_helper.allocator)
    print(machine() + f"; {args.security}")
    print(_HEADER)
    figures: dict[str, dict[str, Any]] = {}
    wrong = []
    for name in dict.fromkeys(args.only or PRIMITIVES):
        try:
            case = make_case(name, args.rows, digit_bits=args.digit_bits, security=args.security)
            m = measure(case, args.rows, args.security)
        except ProtocolError as exc:  # the unverified shuffle refuses malicious mode
            print(f"{name}: refused in {args.security} mode: {exc}", file=sys.stderr)
            continue
        if m is None:
            print(f"{name}: output differs from plaintext", file=sys.stderr)
            wrong.append(name)
            continue
        figures[name] = m
        print(_row(name, args.rows, m), flush=True)
    print(f"# peak RSS {peak_rss_mib():,.0f} MiB (whole process: three helpers, plaintext and shares)")
    if wrong:
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "security": args.security, "primitives": figures}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
