"""Documents in, points out: sources, validation, chunking, hashes and the write path (to come)."""
