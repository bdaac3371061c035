"""The readers of dump files: ``warc`` (WARC/WARC.gz), ``dumps`` (JSON Lines, Parquet); ``common``: what they share."""
