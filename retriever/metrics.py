"""The Prometheus metrics that the model and index layers record (the API adds its own request
metrics and serves them all at GET /metrics). Process-wide, registered once at import."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ENCODER_BATCH = Histogram(
    "xmsearch_encoder_batch_size",
    "Texts per encoder forward pass.",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
ENCODER_SECONDS = Histogram(
    "xmsearch_encoder_seconds",
    "Seconds per encoder forward pass.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DOCUMENTS = Counter(
    "xmsearch_documents",
    "Documents by what happened to them in this process: accepted (queued or taken in), indexed "
    "(all chunks stored or already current), rejected (not valid), failed (valid, not indexable).",
    ["outcome"],
)
CHUNKS_ENCODED = Counter("xmsearch_chunks_encoded", "Chunks encoded and written in this process.")
REINDEX_DOCUMENTS = Gauge(
    "xmsearch_reindex_documents",
    "The reindex this process runs or ran last: documents processed, and the total to copy.",
    ["count"],
)
REINDEX_RUNNING = Gauge("xmsearch_reindex_running", "1 while this process runs a reindex.")
