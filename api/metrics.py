"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

Four families: requests by method, route and status; request latency per route (a
histogram); claims submitted by outcome (recorded, duplicate, voided, invalid, failed); and the
time a submission spent in each stage on its way to the chain (a histogram per stage, see
:data:`SUBMISSION_STAGES`).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SUBMISSION_STAGES = ("check", "store", "queue", "chain")
"""A submission's stages, in order: its claims parsed, checked against the clean-claim rules and fingerprinted;
their documents' write awaited; their queueing in the signing account's pipeline; and the chain (signed, sent,
mined, receipt read) until every claim has its answer."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._claims: dict[str, int] = defaultdict(int)
        self._stages = {stage: _Histogram() for stage in SUBMISSION_STAGES}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            histogram = self._latency.get((method, route))
            if histogram is None:
                histogram = self._latency[(method, route)] = _Histogram()
            histogram.observe(seconds)

    def observe_submission(self, seconds: dict[str, float]) -> None:
        """One submission's time in each of its stages (a name of :data:`SUBMISSION_STAGES` each)."""
        with self._lock:
            for stage, s in seconds.items():
                self._stages[stage].observe(s)

    def count_claims(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._claims[outcome] += n

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP claimledger_http_requests_total HTTP requests by method, route and status.",
                "# TYPE claimledger_http_requests_total counter",
            ]
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(
                    f'claimledger_http_requests_total{{method="{_label(method)}",route="{_label(route)}",'
                    f'status="{status}"}} {n}'
                )
            lines += [
                "# HELP claimledger_http_request_duration_seconds HTTP request latency by method and route.",
                "# TYPE claimledger_http_request_duration_seconds histogram",
            ]
            for (method, route), histogram in sorted(self._latency.items()):
                labels = f'method="{_label(method)}",route="{_label(route)}"'
                lines += histogram.render("claimledger_http_request_duration_seconds", labels)
            lines += [
                "# HELP claimledger_claims_submitted_total Claims submitted through this gateway, by outcome.",
                "# TYPE claimledger_claims_submitted_total counter",
            ]
            for outcome, n in sorted(self._claims.items()):
                lines.append(f'claimledger_claims_submitted_total{{outcome="{_label(outcome)}"}} {n}')
            lines += [
                "# HELP claimledger_submission_stage_seconds Time a submission (one POST's claims) spent in each stage:"
                " check, store (its documents' write), queue, chain (until every claim was answered).",
                "# TYPE claimledger_submission_stage_seconds histogram",
            ]
            for stage, histogram in self._stages.items():
                lines += histogram.render("claimledger_submission_stage_seconds", f'stage="{stage}"')
        return "\n".join(lines) + "\n"


class _Histogram:
    """Counts by LATENCY_BUCKETS_S, their sum and count (the caller holds the lock)."""

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BUCKETS_S)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        position = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
        if position < len(self.buckets):
            self.buckets[position] += 1
        self.sum += seconds
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines = []
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS_S, self.buckets, strict=True):
            cumulative += n
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        lines.append(f"{name}_count{{{labels}}} {self.count}")
        return lines
