"""Prometheus metrics of the server, kept in plain dicts and rendered in the text format.

The text exposition format is small enough to write directly, which keeps the serving
environment free of another dependency. With ``--workers`` > 1 every worker process counts
its own requests (as with any per-process Prometheus client); scrape with one worker, or sum.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterable

from sparkhep.serve.models import ModelStore

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """Request counts, a latency histogram per endpoint, events scored per model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.events: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(endpoint, method, status)] += 1
            counts = self.latency_counts.get(endpoint)
            if counts is None:
                counts = self.latency_counts[endpoint] = [0] * (len(LATENCY_BUCKETS) + 1)
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum[endpoint] += seconds

    def scored(self, model: str, n_events: int) -> None:
        """Count events scored by ``model``."""
        with self._lock:
            self.events[model] += n_events

    def render(self, store: ModelStore) -> str:
        """The Prometheus text format of everything counted, and the models' state."""
        with self._lock:
            lines = _family(
                "sparkhep_requests_total",
                "counter",
                "HTTP requests by endpoint (route template), method and status code.",
                (
                    (_labels(endpoint=e, method=m, status=str(s)), str(n))
                    for (e, m, s), n in sorted(self.requests.items())
                ),
            )
            lines += [
                "# HELP sparkhep_request_duration_seconds Time from request to last byte sent.",
                "# TYPE sparkhep_request_duration_seconds histogram",
            ]
            for endpoint, counts in sorted(self.latency_counts.items()):
                cumulative = 0
                for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), counts, strict=True):
                    cumulative += count
                    le = bound if isinstance(bound, str) else repr(bound)
                    name = "sparkhep_request_duration_seconds_bucket"
                    lines.append(f"{name}{_labels(endpoint=endpoint, le=le)} {cumulative}")
                labels = _labels(endpoint=endpoint)
                lines.append(
                    f"sparkhep_request_duration_seconds_sum{labels} {self.latency_sum[endpoint]!r}"
                )
                lines.append(f"sparkhep_request_duration_seconds_count{labels} {cumulative}")
            lines += _family(
                "sparkhep_events_scored_total",
                "counter",
                "Events scored, by model.",
                ((_labels(model=m), str(self.events.get(m, 0))) for m in store.names),
            )
        models = store.models()
        lines += _family(
            "sparkhep_model_version",
            "gauge",
            "Registry version of the model loaded (0 for a run or a local path).",
            ((_labels(model=m.name, uri=m.source.uri), m.version or "0") for m in models),
        )
        lines += _family(
            "sparkhep_model_loaded_timestamp_seconds",
            "gauge",
            "When the loaded model finished loading (Unix time).",
            ((_labels(model=m.name), repr(m.loaded_at)) for m in models),
        )
        lines += _family(
            "sparkhep_model_reloads_total",
            "counter",
            "Reloads after the model's alias moved.",
            ((_labels(model=n), str(store.reloads[n])) for n in store.names),
        )
        lines += _family(
            "sparkhep_model_reload_failures_total",
            "counter",
            "Reloads that failed (the previous model kept serving).",
            ((_labels(model=n), str(store.reload_failures[n])) for n in store.names),
        )
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, str]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value}" for labels, value in samples]
    return lines


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"
