"""``ipa simulate``: the whole MPC query in the in-memory three-party runner.

Plays everyone but the network: fresh helper keys in memory; one user agent
per user that encrypts its match key **on each event's own site** (``--site``
for events without one) in the epoch of the event's timestamp (weekly
epochs from Unix time 0); the report collector's three upload batches for a
``--query-type`` query of ``--site`` over the events' epochs; each helper
decoding only its own batch (so each checks every report's site binding
itself); then :func:`ipa.attribution.pipeline.run_query` as three helpers
in three threads. ``--plain`` skips the encryption and shares the events
directly (faster, for large inputs). Reconstructs the result and prints it
beside the true answer
(``ipa.reference``): a table on a terminal, else (or with ``--json``) one
JSON object in the schema of :mod:`ipa_client.output`: ``{"command":
"simulate", "rows": n, "sums": [...], "true_sums": [...], "epsilon", "delta",
"cap", "noise": {"mechanism", "std": [...], "ci95": [...]}, "bytes_sent": [H1, H2, H3],
"rounds": R, "seconds": {"share": s, PHASE: s, ..., "total": s}}`` (``noise`` as
:func:`ipa.dp.noise.noise_statement` states it: each sum's noise standard
deviation and the half-width of its 95 % interval). Phase times are the slowest helper's;
``share`` covers encryption, upload batches and decoding; ``total`` is the
wall time of the three-party run. Each phase is shown on stderr as it runs
when stderr is a terminal.

``--security malicious|semi-honest`` (default ``semi-honest``: simulate has
no network whose mode it could take; a network's queries default to
``malicious``) runs the helpers in that mode: in malicious mode each helper's
products are verified at the query's checkpoints (``docs/malicious.md``).

``--list-steps`` prints, instead of the result, one line ``H STEP`` for each
helper H (1–3) and step path at which it sent a message in the run, and
``H STEP input`` where the message carries only the sender's own free choice
(its noise share at ``root/noise``): tampering with those cannot be detected,
and need not be, see ``docs/malicious.md``. With ``--security malicious``
that is every message of a malicious run, checkpoints included: the list a
tamper sweep covers.

``--tamper H:STEP`` makes helper H (1–3) add 1 to the first word of the first
message it sends at step path STEP (a path ``--list-steps`` printed), in the
in-memory runner (:class:`ipa.mpc.memory.Tamper`). In malicious mode the
honest helpers abort: the command prints no sums and exits with status 3,
``ipa: error: malicious behaviour detected: <check> check failed (...)``. In
semi-honest mode the tamper goes unnoticed and the sums printed may be
wrong (which is the point of malicious mode). A STEP at which H sends
nothing is a usage error (status 2).

Exit status: 0 with the result; 2 for bad input or arguments; 3 when a
check for a deviating helper failed (``MaliciousBehaviourError``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import PHASES, QueryResult, no_noise, run_query
from ipa.attribution.rows import SharedRows, share_events
from ipa.crypto.binding import MAX_EPOCH, Binding
from ipa.crypto.keys import KeyRegistry
from ipa.dp.accounting import noise_scale
from ipa.dp.noise import noise_statement
from ipa.dp.release import calibrated_noise
from ipa.errors import InputError
from ipa.events import Events
from ipa.mpc.context import Context
from ipa.mpc.memory import SECURITY_MODES, RunResult, Tamper, run_three
from ipa.mpc.sharing import reconstruct
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.reports.decode import decode_batch
from ipa_client import output
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.commands._input import read_query_events
from ipa_client.commands._query_args import (
    add_query_arguments,
    add_site_arguments,
    add_width_arguments,
    config_from_args,
)
from ipa_client.commands._types import positive_float
from ipa_client.progress import QueryProgress

__all__ = ["HELP", "NAME", "OWN_CHOICE", "add_arguments", "message_steps", "run", "tamper_spec"]

NAME = "simulate"
HELP = "run the MPC query on an event CSV file with three in-memory helpers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the input, the query parameters, the widths, the noise and the output flags."""
    add_query_arguments(parser)
    add_site_arguments(parser, required=False)
    add_width_arguments(parser)
    noise = parser.add_mutually_exclusive_group(required=True)
    noise.add_argument("--epsilon", type=positive_float, help="add DP noise for this ε (δ from --delta)")
    noise.add_argument("--no-noise", action="store_true", help="release exact sums")
    parser.add_argument("--delta", type=positive_float, default=1e-9, help="DP δ (default 1e-9)")
    parser.add_argument(
        "--plain", action="store_true", help="share the events directly: no match-key encryption"
    )
    parser.add_argument(
        "--security",
        choices=SECURITY_MODES,
        default="semi-honest",
        help="the helpers' security mode (default semi-honest; see docs/malicious.md)",
    )
    parser.add_argument(
        "--list-steps",
        action="store_true",
        help="print 'H STEP' for every step at which helper H sends a message (no sums)",
    )
    parser.add_argument(
        "--tamper",
        type=tamper_spec,
        metavar="H:STEP",
        help="helper H (1-3) adds 1 to one word it sends at STEP (a path --list-steps prints)",
    )
    output.add_output_arguments(parser)


def tamper_spec(text: str) -> Tamper:
    """``H:STEP`` as the :class:`~ipa.mpc.memory.Tamper` of helper H's first message at STEP."""
    helper, sep, step = text.partition(":")
    if not sep or helper not in ("1", "2", "3") or not step:
        raise argparse.ArgumentTypeError(f"must be H:STEP with H = 1, 2 or 3 and a step path, got {text!r}")
    return Tamper(int(helper) - 1, step)


def run(args: argparse.Namespace) -> int:
    """Share, run, reconstruct, print the result; return 0."""
    config = config_from_args(args)
    noise = no_noise if args.no_noise else calibrated_noise(args.epsilon, args.delta, config.cap)
    scale = 0.0 if args.no_noise else noise_scale(args.epsilon, args.delta, config.cap)
    events = read_query_events(args.input, config)
    with QueryProgress() as progress:
        progress.start("share")
        start = time.perf_counter()
        if args.plain:
            shares = share_events(events, config, args.site)
        else:
            shares = _encrypted_rows(events, config, args.site)
        shared = time.perf_counter()
        progress.start(PHASES[0])
        on_phase = _phase_done(progress)

        def helper(ctx: Context, rows: SharedRows) -> QueryResult:
            return run_query(ctx, rows, config, noise, on_phase if ctx.party == 0 else None)

        result = _run(helper, shares, args)
        finished = time.perf_counter()
        progress.finish()
    if args.list_steps:
        print("\n".join(message_steps(result)), flush=True)
        return 0
    seconds = {"share": shared - start}
    seconds |= {phase: max(o.seconds[phase] for o in result.outputs) for phase in PHASES}
    seconds["total"] = finished - shared
    sums = reconstruct([o.sums for o in result.outputs]).view(np.int64)
    released = {
        "command": NAME,
        "rows": len(events),
        "sums": sums.tolist(),
        "noise": noise_statement([scale] * 3, len(sums)).to_json(),
        "true_sums": attribute_query(events, config, args.site).tolist(),
        "epsilon": None if args.no_noise else args.epsilon,
        "delta": None if args.no_noise else args.delta,
        "cap": config.cap,
        "bytes_sent": result.bytes_sent(),
        "rounds": result.rounds,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }
    output.emit(released, args)
    return 0


def _run(
    helper: Callable[[Context, SharedRows], QueryResult], shares: list[SharedRows], args: argparse.Namespace
) -> RunResult[QueryResult]:
    """The three helpers in the in-memory runner, in ``--security`` mode, with ``--tamper`` if given."""
    try:
        return run_three(helper, shares, tamper=args.tamper, security=args.security)
    except ValueError as exc:
        if args.tamper is None or "matched no" not in str(exc):
            raise
        where = f"{args.tamper.party + 1}:{args.tamper.step}"
        raise InputError(
            f"--tamper {where}: H{args.tamper.party + 1} sends nothing at that step "
            "(see --list-steps with the same arguments)"
        ) from None


OWN_CHOICE = frozenset({"root/noise", "setup/prss"})
"""Steps whose messages carry only the sender's own free choice (``docs/malicious.md``):
its noise share (the pipeline's noise hook) and, over the network, its PRSS seed contribution."""


def message_steps(result: RunResult) -> list[str]:
    """One line ``H STEP`` (``H STEP input`` at an :data:`OWN_CHOICE` step) per helper and step it sent at."""
    sent = sorted({(m.party + 1, m.step) for m in result.messages})
    return [f"{h} {step}" + (" input" if step in OWN_CHOICE else "") for h, step in sent]


def _phase_done(progress: QueryProgress) -> Callable[[str], None]:
    """The pipeline's phase hook (of H1): the next phase's line starts when one ends."""

    def on_phase(done: str) -> None:
        following = PHASES.index(done) + 1
        if following < len(PHASES):
            progress.helpers(PHASES[following], 0.0)

    return on_phase


def _encrypted_rows(events: Events, config: QueryConfig, site: str | None) -> list[SharedRows]:
    """The three helpers' rows, through user agents, the report collector and each helper's decoder."""
    if site is None and events.sites():
        raise InputError(f"the events name sites ({', '.join(events.sites()[:3])}): give --site")
    if not len(events):
        return share_events(events, config, site)
    registries = [KeyRegistry.generate(h) for h in range(3)]
    network = Network.from_registries(registries)
    epochs = network.epochs.epochs_of(events.timestamp)
    first, last = int(epochs.min()), int(epochs.max())
    if last > MAX_EPOCH:
        raise InputError("timestamps past the last epoch (read as Unix seconds): use --plain")
    query = Binding(site or "site.example", "report-collector", first, "ipa-cli")
    collector = ReportCollector(network, query, config, last_epoch=last)
    collector.add_events(events, simulate_user_agents(events, network, query, epochs))
    batches = collector.uploads()
    decoded = [decode_batch(batches[h], registries[h], query, config, last_epoch=last) for h in range(3)]
    off_site = decoded[0].rows.off_site
    if any((d.rows.off_site != off_site).any() for d in decoded):
        raise InputError("the helpers saw reports made on different sites")  # cannot happen here
    return [d.select() for d in decoded]
