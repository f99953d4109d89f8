"""The Prometheus text the gateway's /metrics serves: histograms of request latency and of a submission's stages."""

from __future__ import annotations

import re

from api.metrics import LATENCY_BUCKETS_S, SUBMISSION_STAGES, Metrics


def _series(text: str, name: str) -> dict[str, float]:
    """The samples of one metric name: labels (as written) -> value."""
    found = {}
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def test_submission_stages_are_histograms_with_cumulative_buckets() -> None:
    metrics = Metrics()
    metrics.observe_submission({"check": 0.002, "store": 0.03, "queue": 0.0001, "chain": 0.4})
    metrics.observe_submission({"check": 0.02, "store": 0.003, "queue": 0.0001, "chain": 12.0})
    text = metrics.render()
    assert "# TYPE claimledger_submission_stage_seconds histogram" in text
    buckets = _series(text, "claimledger_submission_stage_seconds_bucket")
    counts = _series(text, "claimledger_submission_stage_seconds_count")
    sums = _series(text, "claimledger_submission_stage_seconds_sum")
    assert set(counts) == {f'stage="{s}"' for s in SUBMISSION_STAGES}
    assert all(n == 2 for n in counts.values())
    assert sums['stage="chain"'] == 12.4
    # chain: 0.4 s falls in le=0.5, 12 s past the last bound (only +Inf holds it)
    assert buckets['stage="chain",le="0.25"'] == 0
    assert buckets['stage="chain",le="0.5"'] == 1
    assert buckets[f'stage="chain",le="{LATENCY_BUCKETS_S[-1]}"'] == 1
    assert buckets['stage="chain",le="+Inf"'] == 2
    # check: 2 ms in the first bucket (le=0.005), 20 ms from le=0.025 on
    assert buckets['stage="check",le="0.005"'] == 1
    assert buckets['stage="check",le="0.01"'] == 1
    assert buckets['stage="check",le="0.025"'] == 2
    for stage in SUBMISSION_STAGES:  # every series is cumulative: never falls from one bound to the next
        values = [buckets[f'stage="{stage}",le="{b}"'] for b in (*LATENCY_BUCKETS_S, "+Inf")]
        assert values == sorted(values)


def test_an_unused_stage_renders_zero_and_requests_keep_their_histogram() -> None:
    metrics = Metrics()
    metrics.observe_request("POST", "/v1/claims", 201, 0.07)
    metrics.observe_request("POST", "/v1/claims", 409, 0.3)
    text = metrics.render()
    assert _series(text, "claimledger_submission_stage_seconds_count") == {f'stage="{s}"': 0 for s in SUBMISSION_STAGES}
    latency = _series(text, "claimledger_http_request_duration_seconds_bucket")
    assert latency['method="POST",route="/v1/claims",le="0.05"'] == 0
    assert latency['method="POST",route="/v1/claims",le="0.1"'] == 1
    assert latency['method="POST",route="/v1/claims",le="+Inf"'] == 2
    requests = _series(text, "claimledger_http_requests_total")
    assert requests == {
        'method="POST",route="/v1/claims",status="201"': 1,
        'method="POST",route="/v1/claims",status="409"': 1,
    }
