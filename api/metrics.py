"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

Three families: requests by method, route and status; request latency per route (a
histogram); claims submitted by outcome (recorded, duplicate, voided, invalid, failed).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency_buckets: dict[tuple[str, str], list[int]] = {}
        self._latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self._latency_count: dict[tuple[str, str], int] = defaultdict(int)
        self._claims: dict[str, int] = defaultdict(int)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            series = (method, route)
            buckets = self._latency_buckets.setdefault(series, [0] * len(LATENCY_BUCKETS_S))
            position = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
            if position < len(buckets):
                buckets[position] += 1
            self._latency_sum[series] += seconds
            self._latency_count[series] += 1

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
            name = "claimledger_http_request_duration_seconds"
            for series in sorted(self._latency_buckets):
                cumulative = 0
                labels = f'method="{_label(series[0])}",route="{_label(series[1])}"'
                for bound, n in zip(LATENCY_BUCKETS_S, self._latency_buckets[series], strict=True):
                    cumulative += n
                    lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
                lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self._latency_count[series]}')
                lines.append(f"{name}_sum{{{labels}}} {self._latency_sum[series]:.6f}")
                lines.append(f"{name}_count{{{labels}}} {self._latency_count[series]}")
            lines += [
                "# HELP claimledger_claims_submitted_total Claims submitted through this gateway, by outcome.",
                "# TYPE claimledger_claims_submitted_total counter",
            ]
            for outcome, n in sorted(self._claims.items()):
                lines.append(f'claimledger_claims_submitted_total{{outcome="{_label(outcome)}"}} {n}')
        return "\n".join(lines) + "\n"
