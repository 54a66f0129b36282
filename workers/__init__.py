"""The Celery app and its tasks: batching, retries, acknowledgements and dead letters (to come)."""
