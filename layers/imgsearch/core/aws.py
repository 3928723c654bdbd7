"""AWS clients: one ``Clients`` per sandbox, botocore settings, and the error checks shared by
every caller.

botocore retries a few times with backoff; past that the caller's own retry takes over (SQS
redelivery for the embed function, the state machine's ``Retry`` for the pipeline steps)::

    clients = Clients.for_settings(settings)        # the default credential chain, on Lambda
    clients = Clients.for_endpoint("http://127.0.0.1:5000", "us-east-1")   # the local stack
    clients.s3.get_object(...)
    except ClientError as exc:
        if is_not_found(exc): ...

The query function asks for shorter timeouts of its own (``imgsearch.query.service``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    import boto3

    from imgsearch.core.config import Settings

AWS_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
"""What S3 answers for a missing object (``GetObject``: NoSuchKey; ``HeadObject``: 404)."""
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
"""moto accepts any credentials; fixed ones keep a user's real keys away from it."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (empty for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(exc: BaseException) -> bool:
    """True when ``exc`` is S3's answer for an object (or version) that does not exist."""
    return error_code(exc) in NOT_FOUND_CODES


def get_object_if_any(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """S3's ``GetObject`` answer for ``key`` (its ``Body``, ``ETag`` ...), None when there is no
    such object; any other error is raised."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` is there, by ``HeadObject`` (nothing read: the object may be gigabytes);
    any error but not-found is raised."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


SUBJECT_LIMIT = 100
"""SNS refuses a subject longer than this."""


def publish_alert(sns: Any, topic_arn: str, subject: str, message: str) -> bool:
    """Publish ``message`` to the alerts topic with ``subject`` cut to SNS's limit; False (and
    nothing sent) when no topic is configured."""
    if not topic_arn:
        return False
    sns.publish(TopicArn=topic_arn, Subject=subject[:SUBJECT_LIMIT], Message=message)
    return True


@dataclass
class Clients:
    """The boto3 clients of one function, made on first use and kept for the sandbox's life."""

    session: boto3.Session
    endpoint_url: str | None = None
    config: Config = AWS_CONFIG

    @classmethod
    def for_settings(cls, settings: Settings) -> Clients:
        import boto3

        return cls(boto3.Session(region_name=settings.region))

    @classmethod
    def for_endpoint(cls, endpoint_url: str, region: str) -> Clients:
        """Clients of an emulated AWS at ``endpoint_url`` (the local stack's moto server)."""
        import boto3

        return cls(boto3.Session(region_name=region, **LOCAL_CREDENTIALS), endpoint_url)

    def client(self, service: str, config: Config | None = None) -> Any:
        """A new ``service`` client, with ``config`` merged over the default one (the properties
        below keep one default client of each service)."""
        merged = self.config.merge(config) if config is not None else self.config
        return self.session.client(service, endpoint_url=self.endpoint_url, config=merged)

    @functools.cached_property
    def s3(self) -> Any:
        return self.client("s3")

    @functools.cached_property
    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    @functools.cached_property
    def sns(self) -> Any:
        return self.client("sns")
