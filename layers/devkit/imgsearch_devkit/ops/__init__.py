"""Operator actions against a stack (local or deployed), behind the ``imgsearch`` commands.

Each takes boto3 clients from a ``Target`` and does one job: ``stats.collect``, ``upload.upload``,
``dlq.redrive``, ``api.ApiClient`` (the HTTP API, as any client would call it).
"""
