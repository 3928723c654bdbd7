"""The index pipeline's steps, one module each: snapshot, build, validate, publish, rollback
and the failure report; ``contracts`` types the payloads between them. ``functions/<step>/app.py``
wires each to its Lambda handler. Their errors derive from
``imgsearch.catalog.errors.PipelineError``."""
