"""The outbox's Prometheus metrics: backlog, age of its oldest row, publishes and failures."""

from prometheus_client import Counter, Gauge

OUTBOX_BACKLOG = Gauge("mm_outbox_backlog", "Events waiting in the outbox", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "mm_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "mm_outbox_published_total", "Events published by the relay", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "mm_outbox_publish_failures_total", "Relay batches that failed to publish", ["service"]
)
