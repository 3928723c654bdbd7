"""The backfill: embed what a bucket already holds, on Step Functions Distributed Map.

``listing`` writes chunk manifests, ``chunk`` embeds one of them with the embed function's
library code, ``report`` adds the chunks' results up; ``contracts`` holds the payloads between the
states of ``statemachine/backfill.asl.json`` and ``layout`` the keys of a run's files.
"""
