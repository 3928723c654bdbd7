"""A client of the imgsearch HTTP API, for scripts, notebooks and the ``imgsearch`` CLI.

It signs as the stack's ``AuthMode`` requires (SigV4 for ``IAM``, a bearer token for ``JWT``,
nothing for ``none``), retries throttled and unavailable answers with backoff, and returns typed
results::

    from imgsearch_client import Client, Iam

    api = Client("https://abc.execute-api.eu-west-1.amazonaws.com/", auth=Iam(profile="prod"))
    page = api.search("two red circles", k=5)
    for hit in page.results:
        hit.key, hit.score, hit.url
    api.search_image(open("cat.jpg", "rb").read())
    api.similar("images/cat.jpg")
    api.recent(k=12).results[0].url                        # the newest images
    api.version().index_version
"""

from imgsearch_client.auth import Auth, Bearer, Iam, NoAuth, auth_for
from imgsearch_client.client import Client
from imgsearch_client.errors import ApiError, AuthError, ClientError, Unreachable
from imgsearch_client.models import (
    Health,
    RecentImage,
    RecentPage,
    SearchPage,
    SearchResult,
    Version,
)

__all__ = [
    "ApiError",
    "Auth",
    "AuthError",
    "Bearer",
    "Client",
    "ClientError",
    "Health",
    "Iam",
    "NoAuth",
    "RecentImage",
    "RecentPage",
    "SearchPage",
    "SearchResult",
    "Unreachable",
    "Version",
    "auth_for",
]
