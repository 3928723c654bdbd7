"""Which failures are worth a retry.

Only a failure that a later attempt can fix goes back to the queue: throttling, timeouts, 5xx
and broken connections of S3 or DynamoDB (botocore has already retried them a few times by then).
The codes follow botocore's standard retry mode (``botocore/retries/standard.py``)::

    try:
        s3.get_object(...)
    except Exception as exc:
        if is_transient(exc): ...   # report the message failed: SQS redelivers it
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
TRANSIENT_EXCEPTIONS = (
    ConnectionError,  # botocore's: connect/read timeouts and connection resets derive from it
    EndpointConnectionError,
    ConnectionClosedError,
    ReadTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc: BaseException) -> bool:
    """Throttling, timeout, 5xx or connection failure of an AWS call."""
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = error_code(exc)
        return code in THROTTLING_CODES or code in TRANSIENT_CODES or status == 429 or status >= 500
    return isinstance(exc, TRANSIENT_EXCEPTIONS)
