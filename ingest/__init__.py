"""Documents in, points out: sources, validation, chunking, content hashes, jobs and the write path (`Indexer`)."""
