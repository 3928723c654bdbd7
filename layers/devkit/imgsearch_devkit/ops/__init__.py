"""Operator actions against a stack (local or deployed), behind the ``imgsearch`` commands.

Each takes boto3 clients from a ``Target`` and does one job: ``stats.collect``, ``upload.upload``,
``dlq.redrive``; the HTTP API is called with ``imgsearch_client`` (``Target.api()``).
"""
