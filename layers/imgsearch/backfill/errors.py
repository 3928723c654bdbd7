"""The backfill's refusals: a run that cannot do what it was asked, said before any work.

::

    try:
        state = begin(settings, s3, options, run_id, started_at)
    except BackfillError as exc:    # the execution fails at List with this message
        print(exc)
"""

from __future__ import annotations

from imgsearch.core.errors import ImgsearchError


class BackfillError(ImgsearchError, ValueError):
    """The run's input does not fit the stack, or one of its files is missing or wrong."""
