"""A user agent and a report collector producing an upload for the three helpers.

    python examples/upload.py

Makes a helper network's keys (what ``ipa keygen --out DIR`` writes), lets
two user agents hand out encrypted match keys (Alice's impression on a
publisher, her purchase on the shop: a source-fanout query of the
publisher), has a report collector turn four events into the three
per-helper upload batches, and then plays the helpers: each decodes only
its own batch with its own keys, and the three run the query together in
memory. No noise: this is a test setting.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import run_query
from ipa.crypto.binding import Binding
from ipa.mpc.memory import run_three
from ipa.mpc.sharing import reconstruct
from ipa.network import Network, read_key_registry
from ipa.reports.decode import decode_batch
from ipa_client.collector import ReportCollector
from ipa_client.commands.keygen import write_hpke_keys, write_network
from ipa_client.user_agent import UserAgent


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        registries, key_files = write_hpke_keys(out)  # helper1.hpke.toml, ... (private, one per helper)
        network_file = write_network(out, registries)  # network.toml: the three public keys

        # Two browsers whose match keys a provider set last week: a key applies from the next
        # epoch on (without one, a browser uses a random key of its own, and nobody can tell the
        # difference). Each browser takes its epoch from its own clock; here, one we move.
        network = Network.load(network_file)
        now = [time.time() - network.epochs.length_seconds]
        alice = UserAgent.from_network(network_file, clock=lambda: now[0])
        bob = UserAgent.from_network(network_file, clock=lambda: now[0])
        alice.set_match_key("provider.example", 0xA11CE)
        bob.set_match_key("provider.example", 0xB0B)
        now[0] += network.epochs.length_seconds  # a week later
        publisher, shop, collector_name = "news.example", "shoes.example", "collector.example"

        def match_key(agent: UserAgent, site: str) -> bytes:  # what the page gets, for its collector
            return agent.get_encrypted_match_key(
                collector_name, site, match_key_provider="provider.example"
            ).to_bytes()

        # The report collector: a source-fanout query of the publisher (its impressions, the
        # shop's conversions), the query's column widths, four events.
        query = Binding(publisher, collector_name, alice.epoch, match_key_provider="provider.example")
        config = QueryConfig(num_breakdowns=4, cap=100)
        collector = ReportCollector(network, query, config)
        collector.add_source(match_key(alice, publisher), timestamp=1_000, breakdown_key=2)  # campaign 2
        collector.add_source(match_key(bob, publisher), timestamp=1_100, breakdown_key=3)  # campaign 3
        collector.add_trigger(match_key(alice, shop), timestamp=1_500, trigger_value=30)  # Alice buys
        collector.add_trigger(match_key(bob, shop), timestamp=1_600, trigger_value=150)  # 150 (cap: 100)
        uploads = collector.uploads()
        print(f"{len(collector)} reports; upload bytes for H1, H2, H3: {[len(u) for u in uploads]}")

        # The helpers: each opens only its own upload, with its own key file.
        rows = [
            decode_batch(uploads[h], read_key_registry(key_files[h]), query, config).rows for h in range(3)
        ]
        result = run_three(lambda ctx, shares: run_query(ctx, shares, config), rows)
        sums = reconstruct([helper.sums for helper in result.outputs]).tolist()
        print(f"sums per breakdown key: {sums}")
        print("as expected" if sums == [0, 0, 30, 100] else "UNEXPECTED")
        print(f"files written by keygen: {sorted(p.name for p in Path(out).iterdir())}")


if __name__ == "__main__":
    main()
