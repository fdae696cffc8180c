"""One million events end to end: three helper processes over gRPC with TLS, DP noise on.

    python bench/e2e.py --events N [--security MODE] [--json F] [--seed S] [--epsilon X] [--cache DIR] \
        [--workers W]

The user agents' and the collector's encryption is done once and cached in
``--cache`` (default ``bench/.cache``) with the network's keys: it is the user
agents' cost, spread over many devices, and is reported separately. The timed
run starts when the collector begins its upload and ends when it has rebuilt
the result. Printed and written (``--json``): rows/s; seconds per phase
(upload and the collector's total on its clock; decrypt … release, the
slowest helper's); MPC bytes sent per row by each helper; peak RSS of each
helper process. ``--workers W`` (W > 1) gives each helper W Ray worker
actors on a local Ray cluster of its own (``ipa_helper.cluster``); then the
peak RSS of each helper's coordinator and of each of its workers, and the
bytes per row each coordinator sent its workers and got back (the upload's
chunks and the verdicts of decoding, the indices of dropped rows and the
sums of the query, from its ``workers_decoded`` and ``workers_queried`` log
events) and the bytes per row its workers sent each other (to find
duplicates, and in the query) are reported; the MPC bytes include what its
workers sent within their triples. The per-phase peaks are then the
coordinator's decryption only: the MPC phases run on the workers. The
released sums are checked against ``ipa.reference`` to within ten noise
standard deviations (exit 1 otherwise).
``--security`` (``semi-honest`` by default, or ``malicious``) is the
network's mode and the query's (``docs/malicious.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.dp import calibrate
from ipa.mpc.memory import SECURITY_MODES
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork, descendants
from ipa_client.query_client import QueryClient, endpoints, query_params

CONFIG = QueryConfig(num_breakdowns=16, cap=100, window=86_400, max_events_per_user=64, timestamp_bits=20)
BINDING = Binding(site="shop.example", report_collector="default", epoch=1, match_key_provider="idp.example")
DELTA = 1e-9
HELPER_PHASES = ("decrypt", "sort", "attribute", "cap", "aggregate", "noise", "release")


def _batches(directory: Path, events, network_file: Path) -> tuple[list[bytes], float]:
    """The three upload batches, encrypted once and cached next to the keys they are for."""
    paths = [directory / f"upload{i}.bin" for i in (1, 2, 3)]
    meta = directory / "encryption.json"
    if all(p.exists() for p in paths) and meta.exists():
        return [p.read_bytes() for p in paths], json.loads(meta.read_text())["seconds"]
    network = Network.load(network_file)
    start = time.perf_counter()
    collector = ReportCollector(network, BINDING, CONFIG)
    collector.add_events(events, simulate_user_agents(events, network, BINDING))
    batches = list(collector.uploads())
    seconds = time.perf_counter() - start
    for path, batch in zip(paths, batches, strict=True):
        path.write_bytes(batch)
    meta.write_text(json.dumps({"seconds": seconds}))
    return batches, seconds


def _worker_peaks_mb(local: LocalNetwork) -> list[list[float]]:
    """Per helper, the peak RSS (VmHWM, MiB) of each of its Ray worker actors (``ray::IpaWorker``)."""
    peaks = []
    for helper in local.helpers:
        mine = []
        for pid in descendants(helper.pid or 0):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if "\nName:\tray::IpaWorker" in "\n" + status:
                hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
                mine.append(int(hwm.split()[1]) / 1024)
        peaks.append(mine)
    return peaks


def _rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` now (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024


class RssSampler:
    """Samples the resident memory (``VmRSS``) of some processes every ``interval`` s, in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        self.pids, self.interval = pids, interval
        self.samples: list[list[tuple[float, int]]] = [[] for _ in pids]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid, samples in zip(self.pids, self.samples, strict=True):
                samples.append((time.time(), _rss_bytes(pid)))

    def peak_mb(self, index: int, start: float, end: float) -> float | None:
        """The highest sample of process ``index`` between ``start`` and ``end`` (None: none taken)."""
        inside = [rss for t, rss in self.samples[index] if start <= t <= end]
        return max(inside) / (1 << 20) if inside else None


def _phase_peaks_mb(
    local: LocalNetwork, query_id: str, sampler: RssSampler, phases: tuple[str, ...] | None = None
) -> dict[str, list[float | None]]:
    """Per phase (of ``phases``, default all), each helper coordinator's sampled peak RSS while it
    ran (from its ``phase_done`` events). None where a phase was shorter than the sampling interval."""
    peaks: dict[str, list[float | None]] = {}
    for index, helper in enumerate(local.helpers):
        lines = [line for line in helper.log.read_text().splitlines() if line.startswith("{")]
        for event in map(json.loads, lines):
            wanted = phases is None or event.get("phase") in phases
            if event.get("event") == "phase_done" and event.get("query_id") == query_id and wanted:
                end = event["ts"]
                peak = sampler.peak_mb(index, end - event["seconds"], end)
                peaks.setdefault(event["phase"], [None] * len(local.helpers))[index] = peak
    return peaks


def _intra_helper_bytes_per_row(local: LocalNetwork, events: int) -> list[list[float]]:
    """Per helper, [to its workers, back from them, between its workers] per row: the bytes of its
    last decoding and query (``workers_decoded``, ``workers_queried``) together, and what its
    workers sent each other in both."""
    moved = []
    for helper in local.helpers:
        lines = [line for line in helper.log.read_text().splitlines() if line.startswith("{")]
        logged = list(map(json.loads, lines))
        out = back = between = 0
        for name in ("workers_decoded", "workers_queried"):
            found = [e for e in logged if e.get("event") == name]
            out += found[-1].get("bytes_out", 0) if found else 0
            back += found[-1].get("bytes_in", 0) if found else 0
            between += sum(int(b) for b in found[-1]["sibling_bytes"].split(",")) if found else 0
        moved.append([out / events, back / events, between / events])
    return moved


def measure(
    events: int, seed: int, epsilon: float, cache: Path, workers: int = 1, security: str = "semi-honest"
) -> dict:
    """Run one query end to end in ``security`` mode; return the figures (see the module docstring)."""
    data = generate(events, seed=seed, num_breakdowns=CONFIG.num_breakdowns, timestamp_bits=20)
    directory = cache / f"e2e-{events}-{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    # A budget that repeated runs over the same cached reports cannot exhaust.
    with LocalNetwork(
        directory,
        allow_unnoised=False,
        security=security,
        epoch_budget=1e3,
        timeout_seconds=600,
        workers=workers,
    ) as local:
        batches, encryption = _batches(directory, data, local.network_file)
        with QueryClient(endpoints(local.network_file), local.identity, timeout=600) as client:
            params = query_params(BINDING, CONFIG, epsilon=epsilon, delta=DELTA, security=security)
            query_id = client.create(params)
            with RssSampler([h.pid or 0 for h in local.helpers]) as sampler:
                at_rest = [_rss_bytes(h.pid or 0) / (1 << 20) for h in local.helpers]
                start = time.perf_counter()
                client.upload(query_id, batches)
                uploaded = time.perf_counter()
                statuses = client.wait(query_id, poll=0.1, deadline=3600)
                sums = client.results(query_id)
                total = time.perf_counter() - start
            phase_peaks = _phase_peaks_mb(local, query_id, sampler, ("decrypt",) if workers > 1 else None)
        worker_peaks = _worker_peaks_mb(local)
        intra = _intra_helper_bytes_per_row(local, events) if workers > 1 else []
    exact = attribute_query(data, CONFIG)
    std = np.sqrt(3) * calibrate(epsilon, DELTA, CONFIG.cap).scale
    if np.any(np.abs(sums - exact.astype(np.int64)) > 10 * std):
        raise SystemExit(
            "bench/e2e.py: the released sums are further from the reference than the noise allows"
        )
    seconds = {"upload": uploaded - start}
    seconds |= {p: max(s.phase_seconds.get(p, 0.0) for s in statuses) for p in HELPER_PHASES}
    seconds["total"] = total
    return {
        "events": events,
        "security": security,
        "rows_per_s": events / total,
        "seconds": seconds,
        "bytes_per_row": [s.bytes_sent / events for s in statuses],
        "peak_rss_mb": [s.peak_rss_mb for s in statuses],
        "rss_at_rest_mb": at_rest,
        "phase_peak_rss_mb": phase_peaks,
        "workers": workers,
        "worker_peak_rss_mb": worker_peaks,
        "intra_helper_bytes_per_row": intra,
        "encryption_seconds": encryption,
        "upload_bytes_per_row": [len(b) / events for b in batches],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parent / ".cache")
    parser.add_argument("--security", choices=SECURITY_MODES, default="semi-honest")
    parser.add_argument("--json", metavar="F")
    parser.add_argument("--workers", type=int, default=1, help="Ray worker actors per helper (default 1)")
    args = parser.parse_args(argv)
    figures = measure(args.events, args.seed, args.epsilon, args.cache, args.workers, args.security)
    workers = f", {args.workers} Ray workers each" if args.workers > 1 else ""
    print(
        f"# {args.events:,} events, three helper processes{workers}, TLS, DP noise ε = {args.epsilon:g}, "
        f"{args.security}"
    )
    print(f"{'phase':<10} {'seconds':>8}")
    for phase, seconds in figures["seconds"].items():
        print(f"{phase:<10} {seconds:>8.2f}")
    print(f"rows/s {figures['rows_per_s']:,.0f}")
    print("MPC bytes sent per row, H1 H2 H3:", ", ".join(f"{b:,.0f}" for b in figures["bytes_per_row"]))
    print("peak RSS MiB, H1 H2 H3:", ", ".join(f"{m:,.0f}" for m in figures["peak_rss_mb"]))
    print("RSS MiB before the upload, H1 H2 H3:", ", ".join(f"{m:,.0f}" for m in figures["rss_at_rest_mb"]))
    print("sampled peak RSS MiB per phase, H1 H2 H3:")
    for phase, peaks in figures["phase_peak_rss_mb"].items():
        print(f"  {phase:<10} " + ", ".join("—" if m is None else f"{m:,.0f}" for m in peaks))
    if args.workers > 1:
        peaks = figures["worker_peak_rss_mb"]
        each = "; ".join(" ".join(f"{m:,.0f}" for m in p) for p in peaks)
        print("peak RSS MiB of the workers, H1 H2 H3:", each)
        intra = figures["intra_helper_bytes_per_row"]
        moved = "; ".join(f"{out:,.0f} out, {back:,.0f} back" for out, back, _ in intra)
        print("bytes per row, coordinator and workers (decryption, query), H1 H2 H3:", moved)
        between = ", ".join(f"{b:,.0f}" for _, _, b in intra)
        print("bytes per row between the workers of a helper, H1 H2 H3:", between)
    print(
        f"(not timed) user agents and collector encrypting the reports: {figures['encryption_seconds']:.1f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
