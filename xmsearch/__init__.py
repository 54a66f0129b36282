"""The `xmsearch` command line: the one place that sees every package (workers -> ingest -> retriever)."""
