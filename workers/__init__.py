"""The distributed mode: the Celery app and its tasks, the producer and the stream intake (batching), retries,
acknowledgements, job counts and dead letters in Redis."""
