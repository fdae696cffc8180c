"""The whole query in malicious mode on W workers per helper equals the reference (the distributed
sort's malicious mode under the distributed phases; each triple verifies its own products)."""

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import run_query
from ipa.attribution.rows import SharedRows, share_events
from ipa.errors import MaliciousBehaviourError
from ipa.mpc.memory import Tamper, run_workers
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct
from ipa.reference import attribute_query
from ipa.synthetic import generate

CONFIG = QueryConfig(num_breakdowns=8, cap=40, window=3_000, max_events_per_user=4, timestamp_bits=14)


def _run(events, sizes, tamper=None):
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    blocks = [
        [
            SharedRows(
                *(c.map(lambda a, k=k: a[..., bounds[k] : bounds[k + 1]]) for c in rows.columns()),
                off_site=rows.off_site[bounds[k] : bounds[k + 1]],
            )
            for k in range(len(sizes))
        ]
        for rows in share_events(events, CONFIG, None)
    ]
    return run_workers(
        lambda ctx, rows: run_query(ctx, rows, CONFIG).sums,
        blocks,
        workers=len(sizes),
        timeout=120,
        tamper=tamper,
        security="malicious",
    )


@pytest.mark.parametrize("sizes", [[25, 15], [0, 30, 10]])
def test_the_malicious_query_on_workers_equals_the_reference(sizes):
    events = generate(sum(sizes), seed=3, num_breakdowns=8, timestamp_bits=14, max_user_events=8)
    result = _run(events, sizes)
    sums = reconstruct([AShares(sum(s.left for s in b), sum(s.right for s in b)) for b in result.outputs])
    assert sums.tolist() == attribute_query(events, CONFIG, None).tolist()


def test_a_tampered_sort_message_aborts_the_malicious_query_on_workers():
    events = generate(40, seed=4, num_breakdowns=8, timestamp_bits=14, max_user_events=8)
    honest = _run(events, [20, 20])
    step = next(
        m.step for m in honest.messages if m.step.startswith("w1/sort/") and "/shuffle/perm_12" in m.step
    )
    with pytest.raises(MaliciousBehaviourError):
        _run(events, [20, 20], tamper=Tamper(1, step))
