"""Ingest: S3 object events (through SQS) to embeddings-table items.

``events`` parses Lambda's SQS batch event, ``pipeline`` embeds and writes, ``observability``
emits metrics and per-message logs; ``functions/embed/app.py`` wires them to Powertools'
``BatchProcessor``.
"""

from imgsearch.ingest.events import Message, ObjectEvent, Skip, parse_batch
from imgsearch.ingest.pipeline import BatchReport, Ingestor, Outcome

__all__ = [
    "BatchReport",
    "Ingestor",
    "Message",
    "ObjectEvent",
    "Outcome",
    "Skip",
    "parse_batch",
]
