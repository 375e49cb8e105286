"""Token shard formats: one writer per format, tested against a reader of that format."""
