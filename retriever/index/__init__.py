"""The index: the collection schema (points, hits, the IndexSpec a version records), filters, the
first stage, and the store backends (Qdrant Edge, a Qdrant server, qdrant-client's local mode).
Nothing here loads a model."""
