"""botocore client settings for the functions that do batch work (embed and the index pipeline).

botocore retries a few times with backoff; past that the caller's own retry takes over (SQS
redelivery for the embed function, the state machine's ``Retry`` for the pipeline steps)::

    s3 = boto3.client("s3", config=AWS_CONFIG)

The query function keeps shorter timeouts of its own (``imgsearch.search.service``).
"""

from botocore.config import Config

AWS_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)
