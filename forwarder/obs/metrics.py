"""All Prometheus metrics, built in one place on an injected registry.

Tests pass a fresh :class:`prometheus_client.CollectorRegistry`, so there is no
global state to reset. Label values are target *names*, sources and reasons:
never a URL, a token or an app key.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from forwarder import __version__
from forwarder.queue.contract import AlertCounts, QueueStats
from forwarder.state.record import SUPPRESS_REASONS, SuppressReason

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# Why an ingest request was refused: the ``reason`` label of
# forwarder_events_rejected_total. The parser's reasons (bad_json, bad_shape),
# the pipeline's (template_error) and the web layer's refusals together:
# bad_encoding is a Content-Encoding the body does not match (or one not
# accepted), body_timeout a body that did not arrive within the read deadline.
RejectReason = Literal[
    "bad_json",
    "bad_shape",
    "too_large",
    "unauthorized",
    "queue_full",
    "queue_unavailable",
    "template_error",
    "bad_encoding",
    "body_timeout",
]
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)
# Why one alert of an accepted request was refused at mapping time (BigPanda
# would refuse it): the ``reason`` label of forwarder_alerts_refused_total.
# The alert goes straight to the dead-letter store with the same reason.
RefuseReason = Literal[
    "no_primary_property",
    "invalid_status",
    "no_app_key",
]
REFUSE_REASONS: tuple[RefuseReason, ...] = get_args(RefuseReason)
# Alertmanager's reason set, plus ``redirect``: a 3xx answer, which is never
# followed (the token must not go to another URL).
FAILURE_REASONS = (
    "clientError",
    "serverError",
    "rateLimited",
    "authError",
    "timeout",
    "connection",
    "redirect",
)


class _SourceStats:
    """Accepted events and request durations of one ingest source, as plain numbers."""

    __slots__ = ("buckets", "created", "duration_sum", "events")

    def __init__(self, n_buckets: int) -> None:
        self.events = 0
        self.buckets = [0] * (n_buckets + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.created = time.time()


class IngestStats(Collector):
    """``forwarder_events_received_total`` and ``forwarder_ingest_duration_seconds``.

    Exposed exactly like a prometheus_client Counter and Histogram labelled by
    ``source``, but updated with plain arithmetic: every accepted request
    records both, and prometheus_client's children take a lock and walk the
    buckets on each update, which showed in the ingest profile. Updates and
    scrapes both run on the event loop thread, so no lock is needed.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._sources: dict[str, _SourceStats] = {}

    def init_source(self, source: str) -> None:
        """Expose ``source`` at zero."""
        if source not in self._sources:
            self._sources[source] = _SourceStats(len(self._bounds))

    def record(self, source: str, events: int, seconds: float) -> None:
        """One accepted request of ``events`` events that took ``seconds``."""
        s = self._sources.get(source)
        if s is None:
            s = self._sources[source] = _SourceStats(len(self._bounds))
        s.events += events
        s.buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        s.duration_sum += seconds

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "forwarder_events_received",
            "Alert events accepted by the ingest and committed: queued, or suppressed by the"
            " alert state (also counted in forwarder_alerts_suppressed_total).",
            labels=["source"],
        )
        duration = HistogramMetricFamily(
            "forwarder_ingest_duration_seconds",
            "Time from request start to the 200 answer, queue commit included.",
            labels=["source"],
        )
        les = [_le(b) for b in self._bounds] + ["+Inf"]
        for source, s in sorted(self._sources.items()):
            received.add_metric([source], s.events, created=s.created)
            cumulative: list[tuple[str, float]] = []
            total = 0
            for le, n in zip(les, s.buckets, strict=True):
                total += n
                cumulative.append((le, total))
            duration.add_metric([source], cumulative, s.duration_sum)
            duration.samples.append(
                Sample("forwarder_ingest_duration_seconds_created", {"source": source}, s.created)
            )
        yield received
        yield duration


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client prints it (``0.005``, ``1.0``)."""
    return repr(float(bound))


class Metrics:
    """The forwarder's metrics. One instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # The standard process_* (memory, CPU, open fds, start time) and
        # python_* series, on this registry rather than prometheus_client's
        # global one. Each reads the process at scrape time (/proc, gc.get_stats),
        # so one per registry costs nothing between scrapes.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        # Ingest
        self.ingest = IngestStats(_INGEST_BUCKETS)
        registry.register(self.ingest)
        self.events_rejected = Counter(
            "forwarder_events_rejected",
            "Ingest requests refused, by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.alerts_refused = Counter(
            "forwarder_alerts_refused",
            "Alerts of accepted requests refused at mapping time, because BigPanda would"
            " refuse them; each is dead-lettered with the reason.",
            ["target", "reason"],
            registry=registry,
        )
        # Queue: read from the store at each scrape
        self.queue = QueueCollector()
        registry.register(self.queue)
        # Alert state: counted as the store decides, and read from it at each scrape
        self.alerts_suppressed = Counter(
            "forwarder_alerts_suppressed",
            "Alerts acknowledged but not queued because the alert state held them back:"
            " a repeat within repeat_interval (duplicate) or a change while flapping.",
            ["target", "reason"],
            registry=registry,
        )
        self._suppressed_children: dict[tuple[str, SuppressReason], Counter] = {}
        self.alerts_auto_resolved = Counter(
            "forwarder_alerts_auto_resolved",
            "ok alerts queued on behalf of identities not seen for resolve_after.",
            ["target"],
            registry=registry,
        )
        self.alerts_flap_released = Counter(
            "forwarder_alerts_flap_released",
            "Flapping identities released by the scheduler (their status held for flap.hold);"
            " each queued its latest alert with flapping: false.",
            ["target"],
            registry=registry,
        )
        self.alerts = AlertCollector()
        registry.register(self.alerts)
        # Delivery
        self.alerts_delivered = Counter(
            "forwarder_alerts_delivered",
            "Alerts BigPanda acknowledged (201, or 204 for a duplicate).",
            ["target"],
            registry=registry,
        )
        self.requests = Counter(
            "forwarder_requests",
            "HTTP requests to targets, by response code (0: no response).",
            ["target", "code"],
            registry=registry,
        )
        self.delivery_failures = Counter(
            "forwarder_delivery_failures",
            "Failed delivery attempts, by reason.",
            ["target", "reason"],
            registry=registry,
        )
        self.alerts_logged = Counter(
            "forwarder_alerts_logged",
            "Alerts written to the log instead of sent (dry-run, or a log target);"
            " they are removed from the queue and not sent later.",
            ["target"],
            registry=registry,
        )
        self.retries = Counter(
            "forwarder_retries",
            "Alerts scheduled for another attempt after a retryable failure.",
            ["target"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "forwarder_dead_lettered",
            "Alerts moved to the dead-letter store, by reason.",
            ["target", "reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "forwarder_batch_size_alerts",
            "Alerts per request sent to a target.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "forwarder_delivery_latency_seconds",
            "Time from ingest to BigPanda's acknowledgement.",
            ["target"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            "forwarder_request_duration_seconds",
            "Duration of HTTP requests to targets.",
            ["target"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.target_up = Gauge(
            "forwarder_target_up",
            "1 when the target's last attempt succeeded or none failed yet; 0 otherwise.",
            ["target"],
            registry=registry,
        )
        self.target_sending = Gauge(
            "forwarder_target_sending",
            "1 while this process sends for the target (holds its sender claim); 0 otherwise."
            " With several replicas on one queue, one replica at a time sends for a target.",
            ["target"],
            registry=registry,
        )
        self.replica_info = Gauge(
            "forwarder_replica_info",
            "Always 1; the label names this process among the replicas sharing a queue.",
            ["replica"],
            registry=registry,
        )
        self.target_rate_limited = Gauge(
            "forwarder_target_rate_limited",
            "1 while the target holds back after a 429 answer; 0 otherwise.",
            ["target"],
            registry=registry,
        )
        # Mapping
        self.attribute_truncations = Counter(
            "forwarder_attribute_truncations",
            "Alert attribute values cut to BigPanda's length limits.",
            registry=registry,
        )
        # Config
        self.config_reload_ok = Gauge(
            "forwarder_config_last_reload_successful",
            "Whether the last config (re)load succeeded.",
            registry=registry,
        )
        self.config_reload_ts = Gauge(
            "forwarder_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config (re)load.",
            registry=registry,
        )
        self.config_hash = Gauge(
            "forwarder_config_hash",
            "Hash of the loaded config file (first 48 bits of its SHA-256).",
            registry=registry,
        )
        self.build_info = Info("forwarder_build", "Build information.", registry=registry)
        self.build_info.info({"version": __version__})

    def init_source(self, source: str) -> None:
        """Create the series of a source at zero, so dashboards see 0 rather than nothing."""
        self.ingest.init_source(source)
        for reason in REJECT_REASONS:
            self.events_rejected.labels(source, reason)

    def init_target(self, target: str) -> None:
        """Create the series of a target at zero."""
        self.alerts_delivered.labels(target)
        self.alerts_logged.labels(target)
        self.retries.labels(target)
        self.target_up.labels(target).set(1)
        self.target_rate_limited.labels(target).set(0)
        self.target_sending.labels(target).set(0)
        for reason in FAILURE_REASONS:
            self.delivery_failures.labels(target, reason)
        for refused in REFUSE_REASONS:
            self.alerts_refused.labels(target, refused)
        for reason in SUPPRESS_REASONS:
            self.alerts_suppressed.labels(target, reason)
        self.alerts_auto_resolved.labels(target)
        self.alerts_flap_released.labels(target)

    def count_suppressed(self, suppressed: Mapping[tuple[str, SuppressReason], int]) -> None:
        """Count a put's suppressed alerts (:attr:`PutResult.suppressed`).

        On the ingest hot path during a storm of repeats, so each (target,
        reason) child is looked up once and kept: ``labels()`` takes a lock
        and builds its key on every call.
        """
        children = self._suppressed_children
        for key, n in suppressed.items():
            child = children.get(key)
            if child is None:
                child = children[key] = self.alerts_suppressed.labels(*key)
            child.inc(n)

    def config_loaded(self, digest: str, when: float) -> None:
        """Record a successful (re)load of the config with SHA-256 ``digest``."""
        self.config_reload_ok.set(1)
        self.config_reload_ts.set(when)
        self.config_hash.set(int(digest[:12], 16) if digest else 0)


StatsSource = Callable[[], Awaitable[QueueStats]]


class QueueCollector(Collector):
    """The queue gauges: depth, bytes and oldest age per target, and dead letters.

    Their values come from the store, not from counters this process keeps, so
    they are right whoever wrote the queue (another replica, ``forwarder dlq``).
    :meth:`refresh` reads the store (asynchronously, once per scrape) and
    :meth:`collect` renders what it read; every configured target is shown,
    at zero when it has nothing queued.
    """

    def __init__(self) -> None:
        self._stats: QueueStats | None = None
        self._targets: tuple[str, ...] = ()

    async def refresh(self, read: StatsSource, targets: Iterable[str]) -> None:
        """Read fresh stats with ``read`` (the store's ``stats``) for the next collection."""
        self._stats = await read()
        self._targets = tuple(targets)

    def collect(self) -> Iterator[Metric]:
        events = GaugeMetricFamily(
            "forwarder_queue_events", "Alerts waiting in the durable queue.", labels=["target"]
        )
        size = GaugeMetricFamily("forwarder_queue_bytes", "Payload bytes in the durable queue.")
        oldest = GaugeMetricFamily(
            "forwarder_queue_oldest_age_seconds",
            "Age of the oldest queued alert.",
            labels=["target"],
        )
        dead = GaugeMetricFamily(
            "forwarder_dead_letters", "Alerts in the dead-letter store.", labels=["target"]
        )
        stats = self._stats
        per_target: Mapping[str, object] = stats.targets if stats is not None else {}
        size.add_metric([], stats.bytes if stats is not None else 0)
        for target in sorted(set(per_target) | set(self._targets)):
            t = stats.targets.get(target) if stats is not None else None
            events.add_metric([target], t.events if t else 0)
            oldest.add_metric([target], t.oldest_age if t else 0)
            dead.add_metric([target], t.dead_letters if t else 0)
        yield events
        yield size
        yield oldest
        yield dead


CountsSource = Callable[[], Awaitable[AlertCounts]]


class AlertCollector(Collector):
    """The alert-state gauges: open and flapping identities per target.

    Read from the store like :class:`QueueCollector` (so they count what every
    replica decided): :meth:`refresh` once per scrape, :meth:`collect`
    renders; every configured target is shown, at zero when it has none.
    """

    def __init__(self) -> None:
        self._counts = AlertCounts()
        self._targets: tuple[str, ...] = ()

    async def refresh(self, read: CountsSource, targets: Iterable[str]) -> None:
        """Read fresh counts with ``read`` (the store's ``alerts.counts``)."""
        self._counts = await read()
        self._targets = tuple(targets)

    def collect(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            "forwarder_alerts_open",
            "Alert identities whose latest status is not ok (in the alert-state store).",
            labels=["target"],
        )
        flapping = GaugeMetricFamily(
            "forwarder_alerts_flapping",
            "Alert identities currently marked flapping (their changes are held).",
            labels=["target"],
        )
        counts = self._counts
        for target in sorted(set(counts.open) | set(counts.flapping) | set(self._targets)):
            opened.add_metric([target], counts.open.get(target, 0))
            flapping.add_metric([target], counts.flapping.get(target, 0))
        yield opened
        yield flapping
