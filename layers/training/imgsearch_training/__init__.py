"""The imgsearch training job: fine-tune a model bundle from its checkpoint on prepared pairs.

What the SageMaker training image runs (``imgsearch-train``, ``layers/training/Dockerfile``),
and what the local stack and the tests run in-process; never installed in a Lambda image::

    from imgsearch_training.job import run

    exit_code = run(Path("/opt/ml"))   # reads input/, writes model/ and model/training.json
"""
