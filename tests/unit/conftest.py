"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from imgsearch.store import EmbeddingStore, table_definition


@pytest.fixture
def store() -> Iterator[EmbeddingStore]:
    """The embeddings table, as the template defines it, on moto."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition("embeddings"))
        yield EmbeddingStore("embeddings", client)
