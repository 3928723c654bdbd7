"""How a request is authenticated: one class per ``AuthMode`` of the stack.

``Iam`` signs with SigV4 (botocore's signer, credentials from the usual chain: environment,
profile, SSO, instance role), for ``execute-api:Invoke``; ``Bearer`` sends a token (``JWT``
stacks, e.g. a Cognito ID token); ``NoAuth`` sends nothing (``none`` stacks, the local stack)::

    Iam(profile="prod", region="eu-west-1").headers("GET", url, b"")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session

from imgsearch_client.errors import ClientError

SERVICE = "execute-api"


class Auth(Protocol):
    mode: str
    """The ``AuthMode`` it satisfies: ``IAM``, ``JWT`` or ``none``."""

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """The headers to add to this request."""


@dataclass(frozen=True)
class NoAuth:
    mode: str = "none"

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class Bearer:
    token: str
    mode: str = "JWT"

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Iam:
    """SigV4 with the credentials of ``profile`` (default chain when ``None``) in ``region``;
    or of a botocore ``session`` of the caller's."""

    profile: str | None = None
    region: str | None = None
    session: Any = field(default=None, repr=False)
    mode: str = "IAM"

    def __post_init__(self) -> None:
        self._session = self.session or Session(profile=self.profile)
        self.region = self.region or self._session.get_config_variable("region")
        if not self.region:
            raise ClientError("IAM auth needs a region: pass region=, --region or AWS_REGION")

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise ClientError(
                "IAM auth needs AWS credentials (aws configure, aws sso login, or a profile)"
            )
        request = AWSRequest(method=method, url=url, data=body)
        SigV4Auth(credentials.get_frozen_credentials(), SERVICE, self.region).add_auth(request)
        return {k: v for k, v in request.headers.items()}


def auth_for(
    mode: str, profile: str | None = None, region: str | None = None, token: str = ""
) -> Auth:
    """The ``Auth`` a stack's ``AuthMode`` (its ``AuthMode`` output) calls for."""
    if mode == "IAM":
        return Iam(profile=profile, region=region)
    if mode == "JWT":
        if not token:
            raise ClientError("the API uses JWT auth: give a bearer token")
        return Bearer(token)
    if mode in ("none", ""):
        return NoAuth()
    raise ClientError(f"unknown AuthMode {mode!r}: expected IAM, JWT or none")
