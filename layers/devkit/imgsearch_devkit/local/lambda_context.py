"""The ``context`` object Lambda passes to a handler, for handlers invoked in-process.

It has the attributes Powertools' ``Logger.inject_lambda_context`` and the handlers read::

    context = LambdaContext("embed", timeout_seconds=60)
    context.aws_request_id, context.get_remaining_time_in_millis()
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    function_name: str
    timeout_seconds: int = 30
    memory_limit_in_mb: int = 2048
    region: str = "us-east-1"
    account_id: str = "123456789012"
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))
