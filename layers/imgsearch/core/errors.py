"""The root of every error the library raises on purpose.

A caller that wants "anything imgsearch refused" catches ``ImgsearchError``; each package
subclasses it once (``PipelineError``, ``BundleError``, ...) and names its cases below that::

    try:
        rollback(settings, s3)
    except ImgsearchError as exc:
        print(exc)
"""


class ImgsearchError(Exception):
    """An error the library raises on purpose, with a message meant for the user."""
