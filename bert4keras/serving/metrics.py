"""Counters, gauges and histograms written in the Prometheus text exposition format.

https://prometheus.io/docs/instrumenting/exposition_formats/ - small enough to keep
here rather than depend on a client library.
"""

from __future__ import annotations

import threading


def _labels(names: tuple[str, ...], values: tuple) -> str:
    if not names:
        return ""
    escaped = (str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped)) + "}"


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(self.label_names, key)} {value:g}")
        return lines


class Gauge:
    def __init__(self, name: str, help: str):
        self.name, self.help, self.value = name, help, 0.0

    def set(self, value: float) -> None:
        self.value = value

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {self.value:g}"]


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()):
        self.name, self.help, self.buckets, self.label_names = name, help, buckets, labels
        self._series: dict[tuple, list] = {}  # labels -> [bucket counts..., sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *labels) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0] * len(self.buckets) + [0.0, 0])
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += value
            series[-1] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        names = self.label_names + ("le",)
        with self._lock:
            for key, series in sorted(self._series.items()):
                for bound, count in zip(self.buckets, series):
                    lines.append(f"{self.name}_bucket{_labels(names, key + (f'{bound:g}',))} {count}")
                lines.append(f"{self.name}_bucket{_labels(names, key + ('+Inf',))} {series[-1]}")
                lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {series[-2]:g}")
                lines.append(f"{self.name}_count{_labels(self.label_names, key)} {series[-1]}")
        return lines


class Metrics:
    """Everything ``GET /metrics`` reports."""

    def __init__(self):
        self.requests = Counter("bert4keras_requests_total", "HTTP requests answered.", ("route", "code"))
        self.errors = Counter("bert4keras_request_errors_total", "HTTP requests answered with 4xx/5xx.",
                              ("route", "code"))
        self.latency = Histogram("bert4keras_request_duration_seconds", "Time from request to response.",
                                 (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), ("route",))
        self.batch_size = Histogram("bert4keras_batch_size", "Texts per forward pass.",
                                    (1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_tokens = Histogram("bert4keras_batch_tokens", "Padded tokens per forward pass.",
                                      (64, 256, 1024, 4096, 16384, 65536))
        self.forward_seconds = Histogram("bert4keras_forward_seconds", "Time of one forward pass (padding to "
                                         "results).", (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.queue_depth = Gauge("bert4keras_queue_depth", "Requests accepted and not yet answered.")

    def render(self) -> str:
        parts = [self.requests, self.errors, self.latency, self.batch_size, self.batch_tokens, self.forward_seconds,
                 self.queue_depth]
        return "\n".join(line for part in parts for line in part.render()) + "\n"
