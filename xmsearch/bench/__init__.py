"""Benchmarks that print figures, each measured side by side in one run: the encoder (`encode`),
language routing on short real texts (`langid`) and on the hand-written set (`encode.bench_langid`),
search (`search`), ingestion through the queue (`ingest`) and the HTTP API (`api`). They run from
`xmsearch bench`; nothing in the product imports them."""
