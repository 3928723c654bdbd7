"""What a published index is: its S3 layout, ``current.json``, the key table, the report and
the versions kept for rollback. Readers (query, ingest, the devkit) import this, never the
pipeline that writes it."""
