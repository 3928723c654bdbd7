"""The embeddings table: its schema (``schema``) and typed access to it (``table``)."""

from imgsearch.store.schema import (
    EmbeddingRecord,
    Status,
    decode_vector,
    encode_vector,
    pad_sequencer,
    table_definition,
)
from imgsearch.store.table import EmbeddingStore

__all__ = [
    "EmbeddingRecord",
    "EmbeddingStore",
    "Status",
    "decode_vector",
    "encode_vector",
    "pad_sequencer",
    "table_definition",
]
