"""The fast presigner signs exactly as botocore's ``generate_presigned_url`` does."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config

from imgsearch.query.presign import Presigner

NOW = datetime(2024, 6, 1, 12, 30, 5, tzinfo=UTC)
KEYS = ["images/cat.jpg", "images/a b+c%d/é 日本.jpg", "images/~x!*'();:@&=$,?#[].png"]


@pytest.mark.parametrize(
    ("endpoint", "token"),
    [(None, None), ("http://127.0.0.1:5000", "session/token+with=chars")],
    ids=["aws-virtual-hosted", "local-endpoint-with-session-token"],
)
def test_urls_equal_botocores(endpoint, token):
    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret/key+",
        aws_session_token=token,
        region_name="eu-west-1",
    )
    s3 = session.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
    presigner = Presigner(s3, "my-bucket", session.get_credentials(), expires=900)
    for key in KEYS:
        # botocore reads the clock through get_current_datetime (naive UTC)
        with mock.patch(
            "botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)
        ):
            reference = urlsplit(
                s3.generate_presigned_url(
                    "get_object", Params={"Bucket": "my-bucket", "Key": key}, ExpiresIn=900
                )
            )
        ours = urlsplit(presigner.url(key, NOW))
        assert (ours.scheme, ours.netloc, ours.path) == (
            reference.scheme,
            reference.netloc,
            reference.path,
        )
        assert parse_qs(ours.query) == parse_qs(reference.query)
