"""The model: finding and reading ColBERT-XM checkpoints, tokenisation, language codes and adapters,
language detection, loading (device, precision, adapter routing), the Encoder, query batching and
tiny checkpoints for tests. Nothing here knows about Qdrant."""
